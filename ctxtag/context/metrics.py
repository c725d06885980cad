"""User-centric evaluation: the protocols of ISMIR 2020 and the stream metrics of ISMIR 2022.

ISMIR 2020 (poster) compares a multi-label audio tagger with single-label user-aware models:
- MO-MG: multi-label output vs multi-label ground truth per track (classic, ignores the user);
  a track's ground truth is every context any test user gave it.
- MO-SG: multi-label output (thresholded) vs the single context of each (user, track) sample.
- SO-SG: single-label output (argmax) vs the single context of each sample ("restricted case").
- user satisfaction: per user u, G_u and P_u in {0,1}^(n_u x m_u) over the tracks and contexts
  present for u; S_u = f(G_u, P_u) for f in accuracy, recall, precision, F1; averaged over users.
  The poster gives no formula for f: we take accuracy as the share of the user's tracks whose
  row is exactly right (subset accuracy) and recall/precision/F1 over the cells of the matrix.
  P_u has only the user's contexts as columns: a single-label model's row is its argmax among
  them, united over the user's streams of that track (it varies with device and time); a
  multi-label model's row is its thresholded output on those columns.
ISMIR 2022: accuracy (top 1), accuracy@k (true context within the k most probable) and weighted
accuracy@k. The summary we implement from gives no weighting; we weight a hit at rank r by 1/r
(reciprocal rank cut at k), which credits a rank-1 hit fully and keeps the score in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctxtag.tagger.metrics import per_context


def rank_of_truth(prob: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1-based rank of the true class among the probabilities (ties broken against the truth)."""
    true_p = prob[np.arange(len(y)), y]
    return 1 + (prob > true_p[:, None]).sum(axis=1) + ((prob == true_p[:, None]).sum(axis=1) - 1)


def stream_accuracy(prob: np.ndarray, y: np.ndarray, k: int = 3) -> dict[str, float]:
    r = rank_of_truth(prob, y)
    return {"accuracy": float((r == 1).mean()), f"accuracy@{k}": float((r <= k).mean()),
            f"weighted_accuracy@{k}": float(np.where(r <= k, 1.0 / r, 0.0).mean())}


def _one_hot(y: np.ndarray, m: int) -> np.ndarray:
    return np.eye(m, dtype=np.uint8)[y]


def _summary(y_true: np.ndarray, prob: np.ndarray, pred: np.ndarray, contexts: Sequence[str]) -> dict:
    """Per-context and macro AUC (from prob), recall, precision, F1 (from the binary pred)."""
    pc = per_context(y_true, prob)                       # AUC from probabilities
    binary = per_context(y_true, pred.astype(float), threshold=0.5)
    table = {"roc_auc": pc["roc_auc"], "recall": binary["recall"], "precision": binary["precision"],
             "f1": binary["f1"]}
    as_py = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return {"macro": {k: as_py(np.nanmean(v)) if np.isfinite(v).any() else None for k, v in table.items()},
            "per_context": {c: {k: as_py(v[j]) for k, v in table.items()} for j, c in enumerate(contexts)}}


def mo_mg(track_ids: np.ndarray, y: np.ndarray, prob: np.ndarray, contexts: Sequence[str], threshold: float) -> dict:
    """Track-level: one row per track, ground truth = union of the contexts of its test streams."""
    m = len(contexts)
    frame = pd.DataFrame(_one_hot(y, m)).groupby(track_ids).max()
    p = pd.DataFrame(prob).groupby(track_ids).first().loc[frame.index].to_numpy()
    return _summary(frame.to_numpy(), p, p >= threshold, contexts)


def mo_sg(y: np.ndarray, prob: np.ndarray, contexts: Sequence[str], threshold: float) -> dict:
    return _summary(_one_hot(y, len(contexts)), prob, prob >= threshold, contexts)


def so_sg(y: np.ndarray, prob: np.ndarray, contexts: Sequence[str]) -> dict:
    m = len(contexts)
    return _summary(_one_hot(y, m), prob, _one_hot(prob.argmax(axis=1), m), contexts)


def user_satisfaction(user_ids: np.ndarray, track_ids: np.ndarray, y: np.ndarray, prob: np.ndarray,
                      single: bool, threshold: float = 0.5, columns: str = "own",
                      per_user_scores: bool = False) -> dict:
    """Mean over users of accuracy/recall/precision/F1 of P_u against G_u (see the module doc).

    ``columns="own"`` (the poster's protocol): the matrices only have the user's contexts as
    columns, so a single-label model picks its argmax among those, and a multi-label model's other
    outputs are not part of P_u; a user of one context scores 1.0 with any single-label model,
    chance included. ``columns="all"``: every context is a column, the argmax ranges over all of
    them. ``single_context_users``: the share of users with one context, who decide the gap."""
    m = prob.shape[1]
    g = pd.DataFrame(_one_hot(y, m)).groupby([user_ids, track_ids]).max()
    present_of_user = g.groupby(level=0).max().astype(bool)
    single_share = float((present_of_user.sum(axis=1) == 1).mean()) if len(present_of_user) else 0.0
    if columns == "all":                       # G_u's other columns are zeros already (one-hot over m)
        present_of_user[:] = True
    elif columns != "own":
        raise ValueError(f"columns must be own or all, not {columns!r}")
    present = present_of_user.reindex(user_ids).to_numpy()                 # per stream
    if single:
        pred = _one_hot(np.where(present, prob, -np.inf).argmax(axis=1), m).astype(bool)
    else:
        pred = (prob >= threshold) & present
    p = pd.DataFrame(pred.astype(np.uint8)).groupby([user_ids, track_ids]).max().loc[g.index]
    gv, pv = g.to_numpy().astype(bool), p.to_numpy().astype(bool)
    users = g.index.get_level_values(0)
    cells = pd.DataFrame({
        "exact": (gv == pv).all(axis=1),
        "tp": (gv & pv).sum(axis=1), "fp": (~gv & pv).sum(axis=1), "fn": (gv & ~pv).sum(axis=1),
    }, index=users)
    per_user = cells.groupby(level=0).agg(exact=("exact", "mean"), tp=("tp", "sum"), fp=("fp", "sum"),
                                          fn=("fn", "sum"))
    tp, fp, fn = (per_user[c].to_numpy(dtype=float) for c in ("tp", "fp", "fn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out = {"accuracy": float(per_user["exact"].mean()), "recall": float(recall.mean()),
           "precision": float(precision.mean()), "f1": float(f1.mean()), "users": int(len(per_user)),
           "single_context_users": single_share}
    if per_user_scores:               # by user id in sorted order (np.unique's), for the bootstrap
        out["per_user"] = {"accuracy": per_user["exact"].to_numpy(dtype=float), "f1": f1}
    return out


def bootstrap_users(user_ids: np.ndarray, y: np.ndarray, probs: dict[str, np.ndarray],
                    satisfaction: dict[str, dict], k: int, reps: int, seed: int, level: float = 0.95,
                    pairs: Sequence[tuple[str, str]] = ()) -> dict:
    """Percentile bootstrap over users (a user's streams go together): intervals of each model's
    accuracy, acc@k, SO-SG macro F1 and AUC, and user-satisfaction accuracy and F1
    (``satisfaction``: each model's user_satisfaction(..., per_user_scores=True)); and for each
    (a, b) in ``pairs`` the paired difference a - b with its interval and two-sided p."""
    import warnings

    from ctxtag.common import bootstrap as bs
    from ctxtag.tagger.metrics import cluster_roc_auc, weighted

    users, inverse = np.unique(user_ids, return_inverse=True)
    m = next(iter(probs.values())).shape[1]
    truth = _one_hot(y, m)
    counts = bs.multiplicities(len(users), reps, np.random.default_rng(seed))     # (R, users)
    w = counts[:, inverse].astype(np.float64)                                      # (R, streams)
    total = w.sum(axis=1)
    draws: dict[str, dict[str, np.ndarray]] = {}
    for name, prob in probs.items():
        r = rank_of_truth(prob, y)
        d = {"accuracy": w @ (r == 1) / total, f"accuracy@{k}": w @ (r <= k) / total}
        auc = cluster_roc_auc(truth, prob, inverse, counts)
        hits = weighted(truth, _one_hot(prob.argmax(axis=1), m).astype(float), w, ranking=False)
        with warnings.catch_warnings():                  # a resample without a context's streams
            warnings.simplefilter("ignore", RuntimeWarning)
            d["so_sg_f1"], d["so_sg_auc"] = np.nanmean(hits["f1"], axis=1), np.nanmean(auc, axis=1)
        for key, per_user in satisfaction[name]["per_user"].items():
            d[f"user_{key}"] = counts @ per_user / len(users)
        draws[name] = d
    return {"reps": reps, "level": level, "unit": "user",
            "intervals": {name: {key: bs.interval(v, level) for key, v in d.items()} for name, d in draws.items()},
            "paired": {f"{a} - {b}": {key: bs.paired(draws[a][key], draws[b][key], level) for key in draws[a]}
                       for a, b in pairs}}
