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

Tracks are ranked by the log-odds of the context (``log_odds``), not its probability: the tagger
is confident enough that float32 probabilities are exactly 1.0 for thousands of tracks of a large
catalogue, and a top k among such ties is arbitrary (recall@20 measured 0.23 for that reason alone).

The track terms (n x F float32) are the catalogue's memory; ``save``/``load`` keep them in an .npy
file that worker processes map read-only, so N workers share one copy (ctxtag.serving.service).
"""

from __future__ import annotations

import json
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

    def logits(self, rows: np.ndarray, user_term: np.ndarray) -> np.ndarray:
        return np.maximum(self.terms[rows] + (user_term + self.fused_b), 0.0) @ self.head_w.T + self.head_b

    def probabilities(self, rows: np.ndarray, user_term: np.ndarray) -> np.ndarray:
        """(len(rows), contexts): the tagger's output for these tracks and this user, exactly."""
        z = self.logits(rows, user_term)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

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
        key = log_odds(self.logits(rows, user_term), context)
        k = min(k, len(rows))
        top = np.argpartition(-key, k - 1)[:k] if 0 < k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-key[top], kind="stable")]
        return self.ids.take(pa.array(rows[top])).to_pylist(), np.exp(-np.logaddexp(0.0, -key[top]))   # p, the sigmoid of its log-odds

    # --- on disk: the terms mapped read-only and shared by the worker processes ------------------
    def save(self, folder: Path) -> None:
        """Into an existing (staging) folder; the caller swaps it into place (atomic_dir)."""
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


def log_odds(logits: np.ndarray, context: int | None = None) -> np.ndarray:
    """(n, contexts), or (n,) for one ``context``: log(p / (1 - p)) of each context's softmax
    probability p, i.e. its logit minus the log-sum-exp of the other contexts' — what tracks are
    ranked by. It orders tracks as p does (p is its sigmoid) but never saturates: a confident
    tagger gives thousands of tracks p = 1.0 in float32 (measured on a 100k catalogue: 9 of 15 contexts), among which a top k by p
    would be arbitrary, and log p = log(1 - tiny) rounds to 0 just the same."""
    if context is not None:                                                  # a request: one column
        others = np.delete(logits, context, axis=1)
        top = others.max(axis=1, keepdims=True)
        return logits[:, context] - (top + np.log(np.exp(others - top).sum(axis=1, keepdims=True)))[:, 0]
    rows = np.arange(len(logits))
    best = logits.argmax(axis=1)
    top = logits[rows, best][:, None]
    total = np.exp(logits - top).sum(axis=1, keepdims=True)                  # >= 1: the best's own term
    # the others of a context that is not the best include the best: no cancellation below (the
    # best's own entry, which may be log 0, is replaced next)
    with np.errstate(divide="ignore"):
        rest = top + np.log(total - np.exp(logits - top))
    # the others of the best: summed afresh from the runner-up (total - 1 would round the tail away)
    others = logits.copy()
    others[rows, best] = -np.inf
    second = others.max(axis=1, keepdims=True)
    rest[rows, best] = (second + np.log(np.exp(others - second).sum(axis=1, keepdims=True)))[:, 0]
    return logits - rest


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


def prototype_lists(terms: np.ndarray, protos: np.ndarray, head_w: np.ndarray, head_b: np.ndarray,
                    fused_b: np.ndarray, per_list: int, chunk: int = 8_192) -> np.ndarray:
    """(P, contexts, per_list) int32: for each prototype and context, the rows of the tracks with
    the highest probability (by its log-odds, as served), best first. One pass over the terms:
    each chunk (small enough to stay in cache while every prototype scores it) is merged into
    running top lists (memory: P x contexts x per_list, not n). A track's log-odds are at most its
    logit minus the best other logit, so once a list is full only the tracks whose bound beats
    the list's last entry are scored exactly: after the first chunks, almost none."""
    n, contexts = len(terms), len(head_b)
    m = min(per_list, n)
    w = np.ascontiguousarray(head_w.T, dtype=np.float32)
    shift = np.asarray(protos, dtype=np.float32) + fused_b                       # (P, F)
    best = np.full((len(protos), contexts, m), -np.inf, np.float32)
    rows = np.zeros((len(protos), contexts, m), np.int64)
    hidden, logits = np.empty((chunk, len(fused_b)), np.float32), np.empty((chunk, contexts), np.float32)
    for lo in range(0, n, chunk):
        t = np.ascontiguousarray(terms[lo:lo + chunk], dtype=np.float32)
        h, z = hidden[:len(t)], logits[:len(t)]
        for p in range(len(protos)):
            np.add(t, shift[p], out=h)
            np.maximum(h, 0.0, out=h)
            np.matmul(h, w, out=z)
            z += head_b
            two = np.partition(z, contexts - 2, axis=1)[:, -2:]                 # runner-up, best
            bound = z - np.where(z >= two[:, 1:], two[:, :1], two[:, 1:])      # logit - best other
            keep = np.flatnonzero((bound > best[p, :, -1]).any(axis=1))
            if len(keep) == 0:
                continue
            scores = np.concatenate([best[p], log_odds(z[keep]).T], axis=1)      # (contexts, m + kept)
            ids = np.concatenate([rows[p], np.broadcast_to(lo + keep, (contexts, len(keep)))], axis=1)
            top = np.argpartition(-scores, m - 1, axis=1)[:, :m] if scores.shape[1] > m else \
                np.broadcast_to(np.arange(scores.shape[1]), (contexts, scores.shape[1]))
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
            filled = top.shape[1]
            best[p, :, :filled] = np.take_along_axis(scores, top, 1)
            rows[p, :, :filled] = np.take_along_axis(ids, top, 1)
    return rows.astype(np.int32)
