"""`ctxtag weights`: confidence weights of every (track, context) for the weighted loss."""

from __future__ import annotations

import numpy as np

from ctxtag.common.headline import write_report
from ctxtag.common.io import atomic_path, read_matrix, read_split
from ctxtag.common.plots import bar_chart
from ctxtag.config import Params
from ctxtag.labelling.weights import compute_weights, summary

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
HEADLINE = ["tracks", "positive_weight.*"]


def run(params: Params) -> dict:
    p, contexts = params.paths, params.contexts
    ids, y = read_matrix(p.labels_csv, contexts)
    cids, counts = read_matrix(p.counts_csv, contexts)
    if not np.array_equal(ids, cids):
        raise ValueError(f"{p.labels_csv} and {p.counts_csv} list different tracks; rerun `ctxtag label`")
    cfg = params.weights
    fit = None
    if cfg.fit_on == "train":
        split = read_split(p.split_csv)
        fit = np.array([split.get(str(t)) == "train" for t in ids])
        if not fit.any():
            raise ValueError(f"{p.split_csv}: no training track among {p.labels_csv}'s; rerun `ctxtag split`")
    w = compute_weights(y, counts, pairwise=cfg.pairwise, fit=fit, positive_scaling=cfg.positive_scaling)
    with atomic_path(p.weights_npz) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, track_id=ids.astype(str), contexts=np.asarray(contexts), **w.as_dict())
    report = {**summary(w, y, contexts), "fit_on": cfg.fit_on, "fitted_tracks": int(len(y) if fit is None else fit.sum()),
              "positive_scaling": cfg.positive_scaling}
    write_report(report, p, "weights", HEADLINE)
    bar_chart({k.removeprefix("neg_"): [v[c] or 0.0 for c in contexts]
               for k, v in report["mean_negative_weight"].items()},
              contexts, p.plot("negative_weights"),
              "Mean negative weight P(y_c=0 | y_i) over the negatives", "weight")
    return report
