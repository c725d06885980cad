"""Plots people would rather look at than tables: a PNG (for MLflow and the README) and, beside
it, the plotted numbers as CSV in long form (``<name>.csv``; ROC/PR: ``<name>_roc.csv`` and
``<name>_pr.csv``), which dvc.yaml declares as plots with the project's Vega-Lite templates
(.dvc/plots: heatmap, grouped_bars, lines), so `dvc plots show` draws them and `dvc plots diff`
compares two commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ctxtag.common.io import atomic_path


def _figure(size: tuple[float, float], ncols: int = 1):
    """(pyplot, figure, axes) on the file-only backend; imported late to keep CLI start-up fast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=size)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _data(rows: dict[str, Sequence], path: Path) -> Path:
    """The plotted numbers as a long-form CSV (one row per point)."""
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    return path


def heatmap(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str, unit: str) -> Path:
    """A labelled square matrix with its values written in (ICASSP 2020 Fig. 1)."""
    plt, fig, ax = _figure((8, 7))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v}", ha="center", va="center", fontsize=6,
                color="black" if v > threshold else "white")
    fig.colorbar(im, ax=ax, label=unit)
    ax.set_title(title)
    n = len(labels)
    _data({"row": np.repeat(list(labels), n), "column": np.tile(list(labels), n),
           "value": np.asarray(matrix).ravel()}, path.with_suffix(".csv"))
    return _save(plt, fig, path)


def bar_chart(series: Mapping[str, Sequence[float]], categories: Sequence[str], path: Path,
              title: str, ylabel: str) -> Path:
    """Grouped bars: one group per category, one bar per series."""
    plt, fig, ax = _figure((10, 4.5))
    x = np.arange(len(categories))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, categories, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    _data({"category": list(categories) * len(series), "series": np.repeat(list(series), len(categories)),
           "value": np.concatenate([np.asarray(v, dtype=float) for v in series.values()]) if series else []},
          path.with_suffix(".csv"))
    return _save(plt, fig, path)


def line_chart(series: Mapping[str, Sequence[float]], x: Sequence[float], path: Path, title: str,
               xlabel: str, ylabel: str) -> Path:
    plt, fig, ax = _figure((7, 4))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    _lines({name: (x, values) for name, values in series.items()}, path.with_suffix(".csv"))
    return _save(plt, fig, path)


def _lines(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path) -> Path:
    """Curves as rows (series, x, y)."""
    names, xs, ys = [], [], []
    for name, (x, y) in series.items():
        names += [name] * len(x)
        xs += list(x)
        ys += list(y)
    return _data({"series": names, "x": np.asarray(xs, dtype=float), "y": np.asarray(ys, dtype=float)}, path)


def roc_pr_curves(y_true: np.ndarray, y_prob: np.ndarray, contexts: Sequence[str], path: Path,
                  title: str) -> Path:
    """ROC and precision-recall curves, one line per context (skipping one-class contexts). The
    CSVs hold each curve at 101 evenly spaced points (false positive rate, recall): a curve has a
    point per distinct score, too many to diff; precision there is the interpolated precision
    (the best at that recall or more), as PR curves are usually summarised."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt, fig, (roc_ax, pr_ax) = _figure((12, 5), ncols=2)
    cmap = plt.get_cmap("tab20")
    grid = np.linspace(0.0, 1.0, 101)
    roc_rows, pr_rows = {}, {}
    for j, c in enumerate(contexts):
        if not 0 < y_true[:, j].sum() < len(y_true):
            continue
        fpr, tpr, _ = roc_curve(y_true[:, j], y_prob[:, j])
        prec, rec, _ = precision_recall_curve(y_true[:, j], y_prob[:, j])
        roc_ax.plot(fpr, tpr, color=cmap(j), lw=1, label=c)
        pr_ax.plot(rec, prec, color=cmap(j), lw=1, label=c)
        roc_rows[c] = (grid, np.interp(grid, fpr, tpr))
        best = np.maximum.accumulate(prec)                  # recall falls along the arrays: best at >= r
        pr_rows[c] = (grid, best[np.clip(np.searchsorted(-rec, -grid, side="right") - 1, 0, len(rec) - 1)])
    roc_ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    pr_ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle(title)
    _lines(roc_rows, path.with_name(f"{path.stem}_roc.csv"))
    _lines(pr_rows, path.with_name(f"{path.stem}_pr.csv"))
    return _save(plt, fig, path)
