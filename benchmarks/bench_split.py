"""Split speed and quality on the real Deezer labels with their artist ids (48,582 of 49,929)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.labelling.splits import group_ids, iterative_stratification, split_report
from ctxtag.vocabulary import SPLITS

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/deezer_context"


def main() -> int:
    if not (DATA / "ground_truth_folds.csv").exists():
        print(f"skipped: {DATA} not present")
        return 0
    hot = pd.read_csv(DATA / "balanced_ground_truth_hot_vector.csv")
    folds = pd.read_csv(DATA / "ground_truth_folds.csv", usecols=["song_id", "artist_id"])
    d = hot.merge(folds, on="song_id", how="left")
    y = d[hot.columns[1:]].to_numpy()
    artists = d["artist_id"].astype("Int64").astype(str).where(d["artist_id"].notna(), None).to_numpy()
    start = time.perf_counter()
    groups = group_ids(artists)
    split = iterative_stratification(y, groups, [0.65, 0.10, 0.25], seed=0)
    elapsed = time.perf_counter() - start
    report = split_report(y, split, list(hot.columns[1:]), artists, None)
    print(f"{len(y):,} tracks, {len(np.unique(groups)):,} artist groups: split in {elapsed:.2f} s")
    print(f"artist overlap between splits: {report['overlap']['artists']}")
    want = {"train": 0.65, "validation": 0.10, "test": 0.25}
    for name in SPLITS:
        s = report["splits"][name]
        dev = max(abs(s["positives"][c] / y[:, j].sum() - want[name]) for j, c in enumerate(hot.columns[1:]))
        print(f"  {name:<10} {s['tracks']:>6,} tracks ({s['share']:.1%}); per-context positive share within "
              f"{dev:.2%} of {want[name]:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
