"""Loss-weight speed on the real Deezer matrix (49,929 x 15), and the naive loop side by side.

Target (issue: loss weights): all three negative schemes and the positive weights together in
under 5 s on the 2-core CI machine. The naive per-(track, context) loop of public implementations
is timed on a subset in the same run, and the vectorised code on that same subset, so the ratio
is measured rather than guessed; the naive full-size time is extrapolated (it is O(N^2 C)).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.labelling.weights import (
    compute_weights,
    negative_exact,
    negative_ignore_zeros,
    negative_pairwise,
    positive_tfidf,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/deezer_context"


def naive(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, m = y.shape
    ex, iz = np.zeros((n, m)), np.zeros((n, m))
    for i in range(n):
        for c in range(m):
            others = [k for k in range(m) if k != c]
            same = (y[:, others] == y[i, others]).all(1)
            ex[i, c] = (y[same, c] == 0).mean()
            pos = [k for k in others if y[i, k]]
            iz[i, c] = (y[(y[:, pos] == 1).all(1), c] == 0).mean()
    return ex, iz


def timed(fn, *args, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    hot_path = DATA / "balanced_ground_truth_hot_vector.csv"
    if not hot_path.exists():
        print(f"skipped: {hot_path} not present")
        return 0
    hot = pd.read_csv(hot_path)
    counts = pd.read_csv(DATA / "balanced_ground_truth_track_count.csv").set_index("song_id").loc[hot["song_id"]]
    y, n_ic = hot.iloc[:, 1:].to_numpy(), counts.to_numpy()
    print(f"label matrix: {y.shape[0]:,} tracks x {y.shape[1]} contexts, {y.mean() * y.shape[1]:.2f} labels/track")
    for name, fn, args in [("negative exact", negative_exact, (y,)),
                           ("negative ignore-zeros", negative_ignore_zeros, (y,)),
                           ("negative pairwise", negative_pairwise, (y,)),
                           ("positive tf-idf", positive_tfidf, (y, n_ic))]:
        print(f"  {name:<24} {timed(fn, *args) * 1000:8.1f} ms")
    total = timed(compute_weights, y, n_ic)
    print(f"  {'all four together':<24} {total * 1000:8.1f} ms   (target < 5000 ms: {'met' if total < 5 else 'MISSED'})")

    sub = y[np.random.default_rng(0).choice(len(y), 1500, replace=False)]
    t_naive = timed(naive, sub, repeat=1)
    t_vec = timed(lambda s: (negative_exact(s), negative_ignore_zeros(s)), sub)
    ex, iz = naive(sub)
    assert np.allclose(ex, negative_exact(sub)) and np.allclose(iz, negative_ignore_zeros(sub))
    print(f"side by side on {len(sub):,} tracks (exact + ignore-zeros, same results):")
    print(f"  naive loop {t_naive:8.2f} s   vectorised {t_vec * 1000:8.2f} ms   ratio {t_naive / t_vec:,.0f}x")
    full_naive = t_naive * (len(y) / len(sub)) ** 2
    print(f"  naive loop extrapolated to {len(y):,} tracks: ~{full_naive / 60:,.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
