"""Plots people would rather look at than tables (saved as PNG for DVC and MLflow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def bar_chart(series: Mapping[str, Sequence[float]], categories: Sequence[str], path: Path,
              title: str, ylabel: str) -> Path:
    """Grouped bars: one group per category, one bar per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.arange(len(categories))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, categories, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_chart(series: Mapping[str, Sequence[float]], x: Sequence[float], path: Path, title: str,
               xlabel: str, ylabel: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_pr_curves(y_true: np.ndarray, y_prob: np.ndarray, contexts: Sequence[str], path: Path,
                  title: str) -> Path:
    """ROC and precision-recall curves, one line per context (skipping one-class contexts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(12, 5))
    cmap = plt.get_cmap("tab20")
    for j, c in enumerate(contexts):
        if not 0 < y_true[:, j].sum() < len(y_true):
            continue
        fpr, tpr, _ = roc_curve(y_true[:, j], y_prob[:, j])
        prec, rec, _ = precision_recall_curve(y_true[:, j], y_prob[:, j])
        roc_ax.plot(fpr, tpr, color=cmap(j), lw=1, label=c)
        pr_ax.plot(rec, prec, color=cmap(j), lw=1, label=c)
    roc_ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    pr_ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
