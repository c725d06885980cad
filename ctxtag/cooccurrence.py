"""Context co-occurrence (ICASSP 2020 Fig. 1): how many tracks carry each pair of contexts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    y = labels.astype(np.int64)
    return y.T @ y


def plot_heatmap(matrix: np.ndarray, contexts: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(contexts)), contexts, rotation=60, ha="right")
    ax.set_yticks(range(len(contexts)), contexts)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v}", ha="center", va="center", fontsize=6,
                color="black" if v > threshold else "white")
    fig.colorbar(im, ax=ax, label="tracks")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
