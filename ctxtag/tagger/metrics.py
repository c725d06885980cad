"""Per-context and macro metrics of ICASSP 2020 Tables 1-2: Hamming loss, ROC-AUC, PR-AUC,
recall, precision, F1 and true-negative rate (predictions thresholded at 0.5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("hamming_loss", "roc_auc", "pr_auc", "recall", "precision", "f1", "tn_rate")


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def per_context(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Each metric as an (m,) array; NaN where undefined (e.g. AUC of a context with one class)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = y_true.astype(bool)
    pred = y_prob >= threshold
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    tn = (~pred & ~y).sum(0)
    # precision and F1 of a context never predicted are 0, as sklearn's zero_division=0: leaving
    # them undefined would let the macro average skip exactly the contexts a model gives up on
    precision = np.nan_to_num(_safe_div(tp, tp + fp), nan=0.0)
    recall = _safe_div(tp, tp + fn)
    m = y.shape[1]
    roc, pr = np.full(m, np.nan), np.full(m, np.nan)
    for c in range(m):                      # one call per context (15), each vectorised
        if 0 < y[:, c].sum() < len(y):
            roc[c] = roc_auc_score(y[:, c], y_prob[:, c])
            pr[c] = average_precision_score(y[:, c], y_prob[:, c])
    return {
        "hamming_loss": (pred != y).mean(0),
        "roc_auc": roc,
        "pr_auc": pr,
        "recall": recall,
        "precision": precision,
        "f1": np.where(np.isnan(recall), np.nan,
                       np.nan_to_num(_safe_div(2 * precision * recall, precision + recall), nan=0.0)),
        "tn_rate": _safe_div(tn, tn + fp),
    }


def report(y_true: np.ndarray, y_prob: np.ndarray, contexts: Sequence[str], threshold: float = 0.5) -> dict:
    """{"per_context": {ctx: {metric: v}}, "macro": {metric: v}} with NaN as None (JSON)."""
    pc = per_context(y_true, y_prob, threshold)
    as_py = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return {
        "per_context": {c: {k: as_py(pc[k][j]) for k in METRICS} for j, c in enumerate(contexts)},
        "macro": {k: as_py(np.nanmean(pc[k])) if np.isfinite(pc[k]).any() else None for k in METRICS},
    }
