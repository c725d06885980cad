"""Tracks for a user in a context: the user-aware tagger's probability of that context for every
catalogue track, ranked — in two stages once the catalogue is large, as production recommenders do.

The tagger's fused layer splits into a track term and a user term (ContextTagger.fused_term), so a
track's half of the network is computed once per catalogue, not per request:

    p(context | user, track) = softmax(head(relu(T[track] + u + b)))      T: (n_tracks, F), u: (F,)

Small catalogues (up to ``exhaustive_max`` tracks) are scored exactly, whole. Beyond that,
stage 1 retrieves ``candidates`` tracks from an inverted-file index over T (faiss, inner product)
with a query that linearises the score around the mean track: the units active for the mean track
(relu's gate) times the context's head row minus the mean head row (softmax's normalisation);
stage 2 scores the candidates exactly. Request cost then depends on the candidate count, not the
catalogue. Recall of the two-stage top k against exhaustive scoring is measured in
benchmarks/bench_recommend.py: with this query it is still poor (README), which is why catalogues
up to ``exhaustive_max`` are scored exactly; a better stage-1 query is open work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RetrievalConfig:
    exhaustive_max: int = 20_000     # catalogues up to this size are scored whole, exactly
    candidates: int = 400            # stage-1 tracks re-scored exactly in stage 2
    nprobe: int = 24                 # inverted lists visited per query


class Recommender:
    def __init__(self, ids: list[str], terms: np.ndarray, head_w: np.ndarray, head_b: np.ndarray,
                 fused_b: np.ndarray, cfg: RetrievalConfig = RetrievalConfig()):
        self.ids, self.cfg = ids, cfg
        self.head_w = np.ascontiguousarray(head_w, dtype=np.float32)      # (contexts, F)
        self.head_b = head_b.astype(np.float32)
        self.fused_b = fused_b.astype(np.float32)
        self.mean_term = terms.mean(axis=0).astype(np.float32) if len(terms) else np.zeros(len(fused_b), np.float32)
        self.index = _ivf(terms, cfg) if len(terms) > cfg.exhaustive_max else None
        self.terms = None if self.index is not None else np.ascontiguousarray(terms, dtype=np.float32)

    @classmethod
    def from_model(cls, model, ids: list[str], audio: np.ndarray, cfg: RetrievalConfig = RetrievalConfig(),
                   chunk: int = 65_536) -> Recommender:
        """From the user-aware tagger and the catalogue's audio embeddings (n, 256)."""
        terms = np.concatenate([model.fused_term("audio", torch.from_numpy(np.ascontiguousarray(
            audio[i:i + chunk], dtype=np.float32))).numpy() for i in range(0, len(audio), chunk)]) \
            if len(audio) else np.zeros((0, model.fused.out_features), np.float32)
        return cls(ids, terms, model.head.weight.detach().numpy(), model.head.bias.detach().numpy(),
                   model.fused.bias.detach().numpy(), cfg)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        return "exhaustive" if self.index is None else f"two-stage (ivf, {self.cfg.candidates} candidates)"

    def probabilities(self, rows: np.ndarray, user_term: np.ndarray) -> np.ndarray:
        """(len(rows), contexts): the tagger's output for these tracks and this user, exactly."""
        t = self.terms[rows] if self.index is None else self.index.reconstruct_batch(rows)
        logits = np.maximum(t + (user_term + self.fused_b), 0.0) @ self.head_w.T + self.head_b
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def query(self, user_term: np.ndarray, context: int) -> np.ndarray:
        gate = (self.mean_term + user_term + self.fused_b) > 0
        return (gate * (self.head_w[context] - self.head_w.mean(axis=0))).astype(np.float32)

    def candidates(self, user_term: np.ndarray, context: int) -> np.ndarray:
        if self.index is None:
            return np.arange(len(self.ids))
        _, idx = self.index.search(self.query(user_term, context)[None], min(self.cfg.candidates, len(self.ids)))
        return idx[0][idx[0] >= 0]

    def recommend(self, user_term: np.ndarray, context: int, k: int) -> tuple[list[str], np.ndarray]:
        """The k tracks with the highest probability of ``context`` for this user, best first."""
        rows = self.candidates(user_term, context)
        scores = self.probabilities(rows, user_term)[:, context]
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k] if 0 < k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [self.ids[i] for i in rows[top]], scores[top]


def _ivf(terms: np.ndarray, cfg: RetrievalConfig):
    """An inverted-file index over the track terms (inner product): ~4 sqrt(n) lists (at most 4,096,
    so that training stays minutes at 10M tracks) trained on a sample of 40 per list; its direct map
    lets stage 2 read the candidates' exact terms back."""
    import faiss

    x = np.ascontiguousarray(terms, dtype=np.float32)
    nlist = int(min(max(4 * np.sqrt(len(x)), 16), 4096, len(x) // 39))
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    index.train(x[rng.choice(len(x), min(len(x), nlist * 40), replace=False)])
    index.add(x)
    index.make_direct_map()
    index.nprobe = cfg.nprobe
    return index
