"""Per-context and macro metrics of ICASSP 2020 Tables 1-2: Hamming loss, ROC-AUC, PR-AUC,
recall, precision, F1 and true-negative rate (predictions thresholded at 0.5)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

METRICS = ("hamming_loss", "roc_auc", "pr_auc", "recall", "precision", "f1", "tn_rate")


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def per_context(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Each metric as an (m,) array; NaN where undefined (e.g. AUC of a context with one class)."""
    return {k: v[0] for k, v in weighted(y_true, y_prob, np.ones((1, len(y_true))), threshold).items()}


def weighted(y_true: np.ndarray, y_prob: np.ndarray, w: np.ndarray, threshold: float = 0.5,
             ranking: bool = True) -> dict[str, np.ndarray]:
    """Each metric as an (R, m) array under R weightings of the rows ``w`` (R, n): integer
    multiplicities are bootstrap resamples, a row of ones the plain metric. ROC-AUC is the
    trapezoid under the ROC curve and PR-AUC the average precision over the distinct scores, as
    scikit-learn computes them (equal to 1e-15 on unit weights, tested); ``ranking=False`` skips
    those two (NaN), the costly part, where only thresholded metrics are wanted."""
    y = y_true.astype(bool)
    pred = y_prob >= threshold
    w = np.asarray(w, dtype=np.float64)
    tp, fp = w @ (pred & y), w @ (pred & ~y)
    fn, tn = w @ (~pred & y), w @ (~pred & ~y)
    # precision and F1 of a context never predicted are 0, as sklearn's zero_division=0: leaving
    # them undefined would let the macro average skip exactly the contexts a model gives up on
    precision = np.nan_to_num(_safe_div(tp, tp + fp), nan=0.0)
    recall = _safe_div(tp, tp + fn)
    roc, pr = np.full(tp.shape, np.nan), np.full(tp.shape, np.nan)
    for c in range(y.shape[1] if ranking else 0):   # one pass per context (15), vectorised over resamples
        roc[:, c], pr[:, c] = _ranking(y[:, c], y_prob[:, c], w)
    return {
        "hamming_loss": (w @ (pred != y)) / w.sum(axis=1, keepdims=True),
        "roc_auc": roc,
        "pr_auc": pr,
        "recall": recall,
        "precision": precision,
        "f1": np.where(np.isnan(recall), np.nan,
                       np.nan_to_num(_safe_div(2 * precision * recall, precision + recall), nan=0.0)),
        "tn_rate": _safe_div(tn, tn + fp),
    }


def _ranking(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ROC-AUC, average precision) of one context under each weighting, NaN without both classes."""
    order = np.argsort(-score, kind="stable")
    last = np.r_[np.nonzero(np.diff(score[order]))[0], len(order) - 1]   # end of each run of equal scores
    wo, pos = w[:, order], y[order]
    tps = np.cumsum(wo * pos, axis=1)[:, last]             # weight of positives scoring >= each threshold
    fps = np.cumsum(wo * ~pos, axis=1)[:, last]
    n_pos, n_neg = tps[:, -1:], fps[:, -1:]
    ok = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    tpr, fpr = _safe_div(tps, n_pos), _safe_div(fps, n_neg)
    zero = np.zeros((len(w), 1))
    tpr, fpr = np.hstack([zero, tpr]), np.hstack([zero, fpr])
    roc = (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(axis=1)
    precision = np.nan_to_num(_safe_div(tps, tps + fps), nan=0.0)
    ap = (np.diff(tpr, axis=1) * precision).sum(axis=1)
    return np.where(ok, roc, np.nan), np.where(ok, ap, np.nan)


def report(y_true: np.ndarray, y_prob: np.ndarray, contexts: Sequence[str], threshold: float = 0.5) -> dict:
    """{"per_context": {ctx: {metric: v}}, "macro": {metric: v}} with NaN as None (JSON)."""
    pc = per_context(y_true, y_prob, threshold)
    as_py = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return {
        "per_context": {c: {k: as_py(pc[k][j]) for k in METRICS} for j, c in enumerate(contexts)},
        "macro": {k: as_py(np.nanmean(pc[k])) if np.isfinite(pc[k]).any() else None for k in METRICS},
    }


def cluster_roc_auc(y_true: np.ndarray, y_prob: np.ndarray, group: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC per context (R, m) when whole groups (users) are resampled: ``group`` gives each
    row's group index, ``counts`` (R, groups) each group's multiplicity. The same numbers as
    ``weighted`` with row weights counts[:, group] (tested), from a groups x groups table of
    positive-over-negative pair counts per context, built once: a resample then costs
    (groups x groups), not (rows x rows)."""
    y = y_true.astype(bool)
    n_groups = counts.shape[1]
    c = counts.astype(np.float64)
    out = np.full((len(c), y.shape[1]), np.nan)
    for k in range(y.shape[1]):
        pos, neg = y[:, k], ~y[:, k]
        wins = np.zeros((n_groups, n_groups))      # wins[u, v]: pairs (u's positive, v's negative), ties 1/2
        for v in np.unique(group[neg]):
            negs = np.sort(y_prob[neg & (group == v), k])
            below = np.searchsorted(negs, y_prob[pos, k], "left")
            ties = np.searchsorted(negs, y_prob[pos, k], "right") - below
            wins[:, v] = np.bincount(group[pos], weights=below + 0.5 * ties, minlength=n_groups)
        n_pos = c @ np.bincount(group[pos], minlength=n_groups)
        n_neg = c @ np.bincount(group[neg], minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where((n_pos > 0) & (n_neg > 0), ((c @ wins) * c).sum(axis=1) / (n_pos * n_neg), np.nan)
    return out


def bootstrap(y_true: np.ndarray, probs: dict[str, np.ndarray], reps: int, seed: int, threshold: float = 0.5,
              level: float = 0.95, baseline: str | None = None, chunk: int = 200) -> dict:
    """Percentile bootstrap over the test tracks: each model's macro metrics with their ``level``
    interval, and each model's paired difference from ``baseline`` (every model scored on the same
    resamples) with its interval and two-sided p-value. Resamples are drawn in chunks, so memory
    stays (chunk x tracks) whatever ``reps``."""
    from ctxtag.common import bootstrap as bs

    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list]] = {name: {k: [] for k in METRICS} for name in probs}
    for start in range(0, reps, chunk):
        w = bs.multiplicities(len(y_true), min(chunk, reps - start), rng)
        for name, prob in probs.items():
            for k, v in weighted(y_true, prob, w, threshold).items():
                with warnings.catch_warnings():          # a resample without a context's positives
                    warnings.simplefilter("ignore", RuntimeWarning)
                    draws[name][k].append(np.nanmean(v, axis=1))
    macro = {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in draws.items()}
    out: dict = {"reps": reps, "level": level, "unit": "track",
                 "intervals": {name: {k: bs.interval(v, level) for k, v in m.items()} for name, m in macro.items()}}
    if baseline in macro:
        out["baseline"] = baseline
        out["paired"] = {name: {k: bs.paired(macro[name][k], macro[baseline][k], level) for k in METRICS}
                         for name in macro if name != baseline}
    return out
