"""`ctxtag split`: 65/10/25 stratified split with no artist or album in two splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.common.headline import write_report
from ctxtag.common.io import atomic_path, read_matrix
from ctxtag.common.plots import bar_chart
from ctxtag.config import Params
from ctxtag.labelling.splits import group_ids, iterative_stratification, split_report
from ctxtag.vocabulary import SPLITS

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
HEADLINE = ["splits.*.tracks", "splits.*.share", "overlap.*"]


def run(params: Params) -> dict:
    p, contexts = params.paths, params.contexts
    ids, y = read_matrix(p.labels_csv, contexts)
    meta = pd.read_csv(p.labelled_tracks_csv, dtype=str).set_index("track_id").loc[ids]
    artists, albums = meta["artist_id"].to_numpy(), meta["album_id"].to_numpy()
    split = iterative_stratification(y, group_ids(artists, albums), list(params.split.ratios().values()),
                                     params.seed)
    report = split_report(y, split, contexts, artists, albums)
    if any(report["overlap"].values()):
        raise AssertionError(f"artist/album overlap between splits: {report['overlap']}")
    with atomic_path(p.split_csv) as tmp:
        pd.DataFrame({"track_id": ids, "split": np.asarray(SPLITS)[split]}).to_csv(tmp, index=False)
    write_report(report, p, "split", HEADLINE)
    bar_chart({name: [report["splits"][name]["positive_ratio"][c] for c in contexts] for name in SPLITS},
              contexts, p.plot("split_positive_ratio"),
              "Positive ratio per context in each split", "share of tracks")
    return report
