"""Nearest neighbours of a user embedding among track embeddings, by cosine similarity.

Below ``min_ann`` tracks one matrix product is exact and fast; from there on an HNSW graph (faiss,
inner product on unit vectors = cosine) answers in about logarithmic time. Its recall@K against
exact search is measured in benchmarks/bench_ann.py.
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ExactIndex:
    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = unit(vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each (n_queries, k), best first."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(np.atleast_2d(queries)), 0), np.float32), np.zeros((len(np.atleast_2d(queries)), 0), np.int64)
        sims = unit(np.atleast_2d(queries)) @ self.vectors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(self) else np.tile(np.arange(k), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(sims, idx, axis=1), idx


class HNSWIndex:
    kind = "hnsw"

    def __init__(self, vectors: np.ndarray, m: int = 32, ef_search: int = 128, ef_construction: int = 200):
        import faiss

        x = unit(vectors)
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(x)
        self.index.hnsw.efSearch = ef_search

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, k)     # HNSW returns at most efSearch
        scores, idx = self.index.search(unit(np.atleast_2d(queries)), k)
        return scores, idx


def build(vectors: np.ndarray, min_ann: int, m: int = 32, ef_search: int = 128) -> ExactIndex | HNSWIndex:
    """Exact search for small catalogues, HNSW from ``min_ann`` tracks on."""
    return HNSWIndex(vectors, m, ef_search) if len(vectors) >= min_ann else ExactIndex(vectors)
