"""Dataset balancing (ICASSP 2020 §3.2): add tracks to under-filled contexts up to a cap.

Contexts are visited from the least to the most represented. For each, tracks that carry it
and are not yet selected are added, in a seeded random order, until the context holds ``cap``
selected tracks (or runs out). A track brings all its labels with it, so frequent contexts fill
up through co-occurrence and may end above the cap — as in the released data (cap 20,000,
24k positives per context on average).
"""

from __future__ import annotations

import numpy as np


def balance(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Boolean mask of the selected tracks; deterministic for a given seed."""
    labels = labels.astype(bool)
    totals = labels.sum(axis=0)
    if cap is None:
        cap = int(totals[totals > 0].min()) if totals.any() else 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    selected = np.zeros(len(labels), dtype=bool)
    for c in np.argsort(totals, kind="stable"):
        need = cap - int(labels[selected, c].sum())
        if need <= 0:
            continue
        candidates = order[labels[order, c] & ~selected[order]]
        selected[candidates[:need]] = True
    return selected
