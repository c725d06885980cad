"""Every plot also writes the numbers it draws, as long-form CSV that DVC's plots read."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ctxtag.common import plots


def test_bars_heatmap_and_lines_write_their_numbers(tmp_path):
    plots.bar_chart({"a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0]}, ["x", "y", "z"], tmp_path / "bars.png", "t", "v")
    bars = pd.read_csv(tmp_path / "bars.csv")
    assert bars.set_index(["series", "category"])["value"].to_dict() == {
        ("a", "x"): 0.1, ("a", "y"): 0.2, ("a", "z"): 0.3, ("b", "x"): 1.0, ("b", "y"): 2.0, ("b", "z"): 3.0}
    matrix = np.array([[5, 1], [1, 7]])
    plots.heatmap(matrix, ["p", "q"], tmp_path / "heat.png", "t", "n")
    heat = pd.read_csv(tmp_path / "heat.csv")
    assert heat.pivot(index="row", columns="column", values="value").loc[["p", "q"], ["p", "q"]].to_numpy().tolist() \
        == matrix.tolist()
    plots.line_chart({"train": [3.0, 2.0], "validation": [3.5, 2.5]}, [1, 2], tmp_path / "loss.png", "t", "epoch", "loss")
    loss = pd.read_csv(tmp_path / "loss.csv")
    assert loss.query("series == 'validation'")[["x", "y"]].to_numpy().tolist() == [[1, 3.5], [2, 2.5]]
    assert (tmp_path / "loss.png").stat().st_size > 1000            # the picture too


def test_roc_and_pr_curves_are_sampled_on_a_grid(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.3).astype(int)
    y[:, 1] = 0
    y[0, 1] = 1                                                        # a context with one positive
    p = np.clip(rng.random((400, 2)) * 0.6 + y * 0.3, 0, 1)
    plots.roc_pr_curves(y, p, ["good", "rare"], tmp_path / "rp.png", "t")
    roc, pr = pd.read_csv(tmp_path / "rp_roc.csv"), pd.read_csv(tmp_path / "rp_pr.csv")
    for curve in (roc, pr):
        assert set(curve["series"]) == {"good", "rare"} and (curve.groupby("series").size() == 101).all()
    good = roc[roc["series"] == "good"]
    assert np.all(np.diff(good["y"]) >= 0) and good["y"].iloc[-1] == 1.0          # a ROC curve rises to 1
    # its area is the model's AUC (to the grid's resolution)
    assert abs(np.trapezoid(good["y"], good["x"]) - roc_auc_score(y[:, 0], p[:, 0])) < 0.02
    # interpolated precision never rises with recall, and reaches the base rate at recall 1
    precision = pr[pr["series"] == "good"]["y"].to_numpy()
    assert np.all(np.diff(precision) <= 1e-12) and precision[-1] >= y[:, 0].mean() - 1e-9
