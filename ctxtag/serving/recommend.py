"""Tracks for a user in a context: the user-aware tagger's probability of that context for every
catalogue track, ranked — in two stages once the catalogue is large, as production recommenders do.

The tagger's fused layer splits into a track term and a user term (ContextTagger.fused_term), so a
track's half of the network is computed once per catalogue, not per request:

    p(context | user, track) = softmax(head(relu(T[track] + u + b)))      T: (n_tracks, F), u: (F,)

Small catalogues (up to ``exhaustive_max`` tracks) are scored exactly, whole. Beyond that:

- stage 1, built once per catalogue: the users' terms are clustered into ``prototypes`` (k-means),
  and for every (prototype, context) the ``per_list`` tracks the network ranks highest for that
  prototype are kept — an index of exact answers for typical listeners. A request takes the lists
  of the user's ``probes`` nearest prototypes for its context (a few hundred tracks);
- stage 2: those candidates are scored exactly for the user.

Why prototypes and not an inner-product index over T: the score is relu then softmax of T + u,
not a dot product; a linearised query (relu's gate at the mean track, the context's head row)
measured recall@20 ~0.01, because which tracks win depends on which units the *user* switches on.
Nearby users switch on nearly the same units, so the nearest prototypes' exact lists hold the
user's top tracks. Request cost depends on probes x per_list, not on the catalogue; recall@20
against exhaustive scoring is measured in benchmarks/bench_recommend.py (README).

The track terms (n x F float32) are the catalogue's memory; ``save``/``load`` keep them in an .npy
file that worker processes map read-only, so N workers share one copy (ctxtag.serving.service).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch


@dataclass(frozen=True)
class RetrievalConfig:
    exhaustive_max: int = 20_000     # catalogues up to this size are scored whole, exactly
    prototypes: int = 64             # user prototypes (k-means of the users' terms)
    per_list: int = 200              # tracks kept per (prototype, context)
    probes: int = 3                  # nearest prototypes whose lists a request re-scores


class Recommender:
    def __init__(self, ids, terms: np.ndarray, head_w: np.ndarray, head_b: np.ndarray, fused_b: np.ndarray,
                 cfg: RetrievalConfig = RetrievalConfig(), prototypes: np.ndarray | None = None,
                 lists: np.ndarray | None = None):
        """``ids``: track ids (an arrow string array or a list); ``terms`` (n, F): the track terms,
        possibly a read-only memory map; ``prototypes`` (P, F) and ``lists`` (P, contexts,
        per_list) rows: the stage-1 index, None for exhaustive scoring."""
        self.ids = ids if isinstance(ids, pa.Array) else pa.array([str(i) for i in ids], pa.string())
        self.terms, self.cfg = terms, cfg
        self.head_w = np.ascontiguousarray(head_w, dtype=np.float32)      # (contexts, F)
        self.head_b = np.asarray(head_b, dtype=np.float32)
        self.fused_b = np.asarray(fused_b, dtype=np.float32)
        self.prototypes, self.lists = prototypes, lists

    @classmethod
    def build(cls, model, ids, audio: np.ndarray, user_terms: np.ndarray, cfg: RetrievalConfig = RetrievalConfig(),
              chunk: int = 65_536) -> Recommender:
        """From the user-aware tagger, the catalogue's audio embeddings (n, 256) and a sample of
        users' terms (m, F) (the prototypes are theirs; unused for a small catalogue)."""
        return cls.indexed(model, ids, track_terms(model, audio, chunk), user_terms, cfg)

    @classmethod
    def indexed(cls, model, ids, terms: np.ndarray, user_terms: np.ndarray,
                cfg: RetrievalConfig = RetrievalConfig()) -> Recommender:
        """From track terms already computed (a large catalogue streams them, ctxtag.serving.service)."""
        head = (model.head.weight.detach().numpy(), model.head.bias.detach().numpy(), model.fused.bias.detach().numpy())
        if len(terms) <= cfg.exhaustive_max or not len(user_terms):
            return cls(ids, terms, *head, cfg)
        protos = prototypes(user_terms, cfg.prototypes)
        return cls(ids, terms, *head, cfg, protos, prototype_lists(terms, protos, *head, cfg.per_list))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        return "exhaustive" if self.lists is None else \
            f"two-stage ({self.cfg.probes} of {len(self.prototypes)} prototypes x {self.lists.shape[2]} tracks)"

    def probabilities(self, rows: np.ndarray, user_term: np.ndarray) -> np.ndarray:
        """(len(rows), contexts): the tagger's output for these tracks and this user, exactly."""
        return softmax(np.maximum(self.terms[rows] + (user_term + self.fused_b), 0.0) @ self.head_w.T + self.head_b)

    def candidates(self, user_term: np.ndarray, context: int) -> np.ndarray:
        if self.lists is None:
            return np.arange(len(self))
        d = ((self.prototypes - user_term) ** 2).sum(axis=1)
        near = np.argsort(d)[:self.cfg.probes]
        return np.unique(self.lists[near, context].ravel())      # sorted rows: sequential reads of the map

    def recommend(self, user_term: np.ndarray, context: int, k: int) -> tuple[list[str], np.ndarray]:
        """The k tracks with the highest probability of ``context`` for this user, best first."""
        rows = self.candidates(user_term, context)
        if len(rows) == 0:
            return [], np.zeros(0, np.float32)
        scores = self.probabilities(rows, user_term)[:, context]
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k] if 0 < k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.ids.take(pa.array(rows[top])).to_pylist(), scores[top]

    # --- on disk: the terms mapped read-only and shared by the worker processes ------------------
    def save(self, folder: Path) -> None:
        """Into an existing (temporary) folder; the caller renames it into place (atomic)."""
        folder = Path(folder)
        with pa.OSFile(str(folder / "ids.arrow"), "wb") as sink, \
                pa.ipc.new_file(sink, pa.schema([("track_id", pa.string())])) as writer:
            writer.write(pa.record_batch([self.ids], names=["track_id"]))
        np.save(folder / "terms.npy", np.ascontiguousarray(self.terms, dtype=np.float32))
        np.savez(folder / "head.npz", head_w=self.head_w, head_b=self.head_b, fused_b=self.fused_b,
                 **({} if self.lists is None else {"prototypes": self.prototypes, "lists": self.lists}))
        (folder / "retrieval.json").write_text(json.dumps({**asdict(self.cfg), "tracks": len(self)}))

    @classmethod
    def load(cls, folder: Path) -> Recommender:
        """Ids and terms mapped read-only (shared between processes), the small arrays read."""
        folder = Path(folder)
        meta = json.loads((folder / "retrieval.json").read_text())
        ids = pa.ipc.open_file(pa.memory_map(str(folder / "ids.arrow"))).read_all().column(0).combine_chunks()
        terms = np.load(folder / "terms.npy", mmap_mode="r", allow_pickle=False)
        if meta.pop("tracks") != len(ids) or len(terms) != len(ids):
            raise ValueError(f"{folder}: {len(ids)} track ids and {len(terms)} terms: not one build")
        with np.load(folder / "head.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(ids, terms, arrays["head_w"], arrays["head_b"], arrays["fused_b"], RetrievalConfig(**meta),
                   arrays.get("prototypes"), arrays.get("lists"))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@torch.no_grad()
def track_terms(model, audio: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """(n, F) float32: the audio branch's share of the fused layer for each track, in chunks."""
    out = np.empty((len(audio), model.fused.out_features), np.float32)
    for lo in range(0, len(audio), chunk):
        x = torch.from_numpy(np.ascontiguousarray(audio[lo:lo + chunk], dtype=np.float32))
        out[lo:lo + len(x)] = model.fused_term("audio", x).numpy()
    return out


def prototypes(user_terms: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means centroids of the users' terms (all of them when there are no more than k)."""
    x = np.ascontiguousarray(user_terms, dtype=np.float32)
    if len(x) <= k:
        return x.copy()
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, max_points_per_centroid=1_000)
    km.train(x)
    return km.centroids.copy()


@torch.no_grad()
def prototype_lists(terms: np.ndarray, protos: np.ndarray, head_w: np.ndarray, head_b: np.ndarray,
                    fused_b: np.ndarray, per_list: int, chunk: int = 8_192) -> np.ndarray:
    """(P, contexts, per_list) int32: for each prototype and context, the rows of the tracks with
    the highest probability, best first. One pass over the terms: each chunk (small enough to stay
    in cache while every prototype scores it, in place) is merged into running top lists (memory:
    P x contexts x per_list, not n). The build's one-off cost uses every core."""
    n, contexts = len(terms), len(head_b)
    m = min(per_list, n)
    w, hb = torch.from_numpy(np.ascontiguousarray(head_w.T, dtype=np.float32)), torch.from_numpy(head_b)
    shift = torch.from_numpy(np.asarray(protos, dtype=np.float32) + fused_b)            # (P, F)
    best = torch.full((len(protos), contexts, m), -1.0)
    rows = torch.zeros((len(protos), contexts, m), dtype=torch.int64)
    hidden, logits = torch.empty((chunk, len(fused_b))), torch.empty((chunk, contexts))
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        for lo in range(0, n, chunk):
            t = torch.from_numpy(np.ascontiguousarray(terms[lo:lo + chunk], dtype=np.float32))
            h, lg = hidden[:len(t)], logits[:len(t)]
            ids = torch.arange(lo, lo + len(t)).expand(contexts, -1)
            for p in range(len(protos)):
                torch.add(t, shift[p], out=h).relu_()
                torch.addmm(hb, h, w, out=lg)
                scores = torch.cat([best[p], torch.softmax(lg, dim=1).T], dim=1)
                best[p], top = scores.topk(m, dim=1)
                rows[p] = torch.cat([rows[p], ids], dim=1).gather(1, top)
    finally:
        torch.set_num_threads(threads)
    return rows.numpy().astype(np.int32)
