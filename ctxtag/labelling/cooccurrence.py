"""Context co-occurrence (ICASSP 2020 Fig. 1): how many tracks carry each pair of contexts."""

from __future__ import annotations

import numpy as np


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    y = labels.astype(np.int64)
    return y.T @ y
