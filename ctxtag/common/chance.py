"""The two chance models every results table is read against (ISSUE: "a floor for every number"):
seeded uniform scores, and each label's training prevalence as the score of every test item
(the same ranking for all: what "recommend the popular contexts" achieves)."""

from __future__ import annotations

import numpy as np


def chance_scores(prevalence: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    """{"random": (n, m) seeded uniform scores, "popularity": ``prevalence`` (m,) on every row}."""
    rng = np.random.default_rng(seed)
    prevalence = np.asarray(prevalence, dtype=np.float64)
    return {"random": rng.random((n, len(prevalence))), "popularity": np.tile(prevalence, (n, 1))}
