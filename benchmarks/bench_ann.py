"""Cold-start retrieval at catalogue scale: HNSW (faiss) vs exact cosine search, side by side.

    python benchmarks/bench_ann.py [--tracks 200000 1000000] [--queries 2000] [--k 10 100]

Track embeddings are drawn around the demo's learnt AEs (data/embeddings/track_embeddings.parquet
from `make demo`; a mixture of random directions otherwise) with noise, so the catalogue has the
clustered shape real AEs have; queries are the learnt UEs (or draws like the tracks). Both searches
answer one query at a time, as the service does per request; prints queries/s of each, the
speed-up, HNSW's build time and its recall@K against exact search for a few efSearch settings
(params embeddings.ann_ef_search is the serving default).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ctxtag.config import load_params
from ctxtag.serving.ann import ExactIndex, HNSWIndex, unit


def _anchors(path: Path, column: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if path.exists():
        import pandas as pd

        x = np.stack(pd.read_parquet(path, columns=[column])[column].to_numpy()).astype(np.float32)
        return x[rng.integers(0, len(x), n)] if len(x) < n else x[:n]
    return unit(rng.normal(size=(n, 40)).astype(np.float32))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 100])
    args = ap.parse_args()
    cfg = load_params().embeddings
    rng = np.random.default_rng(0)
    centres = _anchors(Path("data/embeddings/track_embeddings.parquet"), "listening_embedding", 2000, rng)
    queries = unit(_anchors(Path("data/embeddings/user_embeddings.parquet"), "listening_embedding", args.queries, rng)
                   + 0.05 * rng.normal(size=(args.queries, centres.shape[1])).astype(np.float32))
    print(f"{'tracks':>9} {'k':>4} {'efSearch':>8} {'recall@k':>9} {'exact q/s':>10} {'hnsw q/s':>9} {'speed-up':>8}"
          f" {'build s':>8}")
    for n in args.tracks:
        tracks = unit(centres[rng.integers(0, len(centres), n)] + 0.15 * rng.normal(size=(n, centres.shape[1])).astype(np.float32))
        exact = ExactIndex(tracks)
        t0 = time.perf_counter()
        hnsw = HNSWIndex(tracks, m=cfg.ann_m, ef_search=cfg.ann_ef_search)
        build_s = time.perf_counter() - t0
        for k in args.k:
            truth = np.concatenate([exact.search(queries[i:i + 256], k)[1] for i in range(0, len(queries), 256)])
            timed = queries[:200]
            t0 = time.perf_counter()
            for q in timed:
                exact.search(q[None], k)
            exact_qps = len(timed) / (time.perf_counter() - t0)
            for ef in sorted({max(k, 32), cfg.ann_ef_search, 2 * cfg.ann_ef_search}):
                hnsw.index.hnsw.efSearch = ef
                t0 = time.perf_counter()
                got = np.concatenate([hnsw.search(q[None], k)[1] for q in queries])
                qps = len(queries) / (time.perf_counter() - t0)
                recall = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(got, truth, strict=True)])
                print(f"{n:>9} {k:>4} {ef:>8} {recall:>9.3f} {exact_qps:>10.0f} {qps:>9.0f} {qps / exact_qps:>7.1f}x"
                      f" {build_s:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
