"""`ctxtag weights`: confidence weights of every (track, context) for the weighted loss."""

from __future__ import annotations

import numpy as np

from ctxtag.common.io import read_matrix, write_json
from ctxtag.common.plots import bar_chart
from ctxtag.config import Params
from ctxtag.labelling.weights import compute_weights


def run(params: Params) -> dict:
    contexts = params.contexts
    ids, y = read_matrix(params.paths.labelled / "labels.csv", contexts)
    cids, counts = read_matrix(params.paths.labelled / "counts.csv", contexts)
    if not np.array_equal(ids, cids):
        raise ValueError("labels.csv and counts.csv list different tracks; rerun `ctxtag label`")
    w = compute_weights(y, counts, pairwise=params.weights.pairwise)
    out = params.paths.weights
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "weights.npz", track_id=ids.astype(str), contexts=np.asarray(contexts),
                        **w.as_dict())
    neg = y == 0
    summary = {
        "tracks": len(ids),
        "mean_negative_weight": {
            name: {c: float(arr[neg[:, j], j].mean()) if neg[:, j].any() else None
                   for j, c in enumerate(contexts)}
            for name, arr in w.as_dict().items() if name.startswith("neg_")
        },
        "positive_weight": {"mean": float(w.pos_tfidf[y == 1].mean()), "max": float(w.pos_tfidf.max())},
    }
    write_json(summary, params.paths.reports / "weights.json")
    bar_chart({k.removeprefix("neg_"): [v[c] or 0.0 for c in contexts]
               for k, v in summary["mean_negative_weight"].items()},
              contexts, params.paths.reports / "plots/negative_weights.png",
              "Mean negative weight P(y_c=0 | y_i) over the negatives", "weight")
    return summary
