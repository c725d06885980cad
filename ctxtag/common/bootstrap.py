"""Percentile bootstrap: resample multiplicities, intervals and paired differences, shared by the
tagger's Table 2 (resampling test tracks) and the user-model table (resampling users)."""

from __future__ import annotations

import numpy as np


def multiplicities(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) counts: how often each of n units is drawn in each resample of size n."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=reps)


def interval(draws: np.ndarray, level: float) -> dict | None:
    """The central ``level`` percentile interval of the finite draws (None: none finite)."""
    x = draws[np.isfinite(draws)]
    if len(x) == 0:
        return None
    tail = 100 * (1 - level) / 2
    return {"low": float(np.percentile(x, tail)), "high": float(np.percentile(x, 100 - tail))}


def bracket(ci: dict | None) -> str:
    """An interval as the tables print it after a figure: " [low, high]" ("" without one)."""
    return "" if not ci or None in ci.values() else f" [{ci['low']:.2f}, {ci['high']:.2f}]"


def excludes_zero(d: dict) -> bool:
    """A paired difference (``paired``) whose interval lies wholly on one side of 0: it holds."""
    return d["interval"]["low"] > 0 or d["interval"]["high"] < 0


def difference(d: dict) -> str:
    """A paired difference as the reports print it: "+mean [+low, +high]"."""
    return f"{d['mean']:+.3f} [{d['interval']['low']:+.3f}, {d['interval']['high']:+.3f}]"


def paired(a: np.ndarray, b: np.ndarray, level: float) -> dict | None:
    """a - b over the same resamples: mean, interval, and the two-sided bootstrap p-value
    (twice the smaller share of differences on either side of 0, at most 1)."""
    d = a - b
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return None
    return {"mean": float(d.mean()), "interval": interval(d, level),
            "p": float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))}
