"""Evaluation of Chen et al.'s embeddings: liked vs disliked (AUC, precision, Table 1), hit rate @K
of new tracks retrieved for users by cosine similarity, and the side-by-side tables.

Precision needs a decision threshold on the similarity, which the paper does not give: it is the
one that maximises Youden's J (TPR - FPR) on the validation pairs, applied unchanged to the test
pairs — the same rule for every model, so the column compares models, not thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

from ctxtag.common.bootstrap import bracket, difference, excludes_zero


def youden_threshold(liked: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    if not 0 < liked.sum() < len(liked):
        return 0.0
    fpr, tpr, thr = roc_curve(liked, score)
    j = int(np.argmax(tpr - fpr))
    return float(min(thr[j], np.max(score)))


def liked_vs_disliked(liked: np.ndarray, score: np.ndarray, users: np.ndarray, threshold: float) -> dict:
    """Pooled ROC-AUC (the paper's), mean per-user AUC, precision / recall at ``threshold``."""
    from sklearn.metrics import roc_auc_score

    out = {"pairs": int(len(liked)), "liked_share": float(liked.mean()) if len(liked) else float("nan")}
    both = 0 < liked.sum() < len(liked)
    out["auc"] = float(roc_auc_score(liked, score)) if both else float("nan")
    pred = score >= threshold
    out["precision"] = float(liked[pred].mean()) if pred.any() else float("nan")
    out["recall"] = float(pred[liked == 1].mean()) if liked.any() else float("nan")
    out["threshold"] = float(threshold)
    out["user_auc"] = per_user_auc(liked, score, users)
    return out


def per_user_auc(liked: np.ndarray, score: np.ndarray, users: np.ndarray) -> float:
    """Mean over users of their own ROC-AUC (users with both kinds)."""
    auc = user_aucs(liked, score, users)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def user_aucs(liked: np.ndarray, score: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Each user's own ROC-AUC, by user in sorted order (NaN without both kinds), by ranks: no loop
    over users. AUC_u = (sum of the ranks of u's liked pairs among u's pairs - n+(n+ + 1)/2) / (n+ n-)."""
    import pandas as pd

    if len(liked) == 0:
        return np.array([])
    frame = pd.DataFrame({"u": users, "y": liked.astype(np.int64), "s": score})
    frame["r"] = frame.groupby("u")["s"].rank(method="average")
    g = frame.groupby("u")
    pos = g["y"].sum()
    neg = g["y"].count() - pos
    rank_pos = frame[frame["y"] == 1].groupby("u")["r"].sum().reindex(pos.index, fill_value=0.0)
    ok = (pos > 0) & (neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_pos - pos * (pos + 1) / 2) / (pos * neg)
    return np.where(ok, auc, np.nan).astype(float)


def bootstrap_liked(liked: np.ndarray, users: np.ndarray, scores: dict[str, np.ndarray],
                    thresholds: dict[str, float], reps: int, seed: int, level: float = 0.95,
                    pairs=()) -> dict:
    """Table 1's pooled AUC, precision and per-user AUC of each model with percentile intervals over
    resampled users (a user's pairs together), and the paired differences (a, b) in ``pairs``."""
    from ctxtag.common import bootstrap as bs
    from ctxtag.tagger.metrics import weighted

    uniq, inverse = np.unique(users, return_inverse=True)
    counts = bs.multiplicities(len(uniq), reps, np.random.default_rng(seed))
    w = counts[:, inverse].astype(np.float64)
    y = liked.astype(bool)
    draws = {}
    for name, score in scores.items():
        pred = score >= thresholds[name]
        per_user = user_aucs(liked, score, users)
        has = np.isfinite(per_user)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws[name] = {"auc": weighted(y[:, None], score[:, None], w)["roc_auc"][:, 0],
                           "precision": (w @ (pred & y)) / (w @ pred),
                           "user_auc": (counts @ np.where(has, per_user, 0.0)) / (counts @ has)}
    return {"reps": reps, "level": level, "unit": "user",
            "intervals": {n: {k: bs.interval(v, level) for k, v in d.items()} for n, d in draws.items()},
            "paired": {f"{a} - {b}": {k: bs.paired(draws[a][k], draws[b][k], level) for k in draws[a]}
                       for a, b in pairs if a in draws and b in draws}}


def hit_rate(ue: np.ndarray, ae: np.ndarray, liked: np.ndarray, ks: Sequence[int]) -> dict:
    """Retrieval of new tracks for users by cosine similarity (the serving path).

    ue (n_users, d); ae (n_tracks, d) of the new tracks; liked (n_users, n_tracks) bool, the users'
    liked new tracks. Over users with at least one: hit rate @K (a liked track in the top K),
    recall @K, and the hit rate a random ranking would get, 1 - C(N - L, K) / C(N, K)."""
    keep = liked.any(axis=1)
    ue, liked = ue[keep], liked[keep]
    n_users, n = liked.shape
    out: dict = {"users": int(n_users), "new_tracks": int(n)}
    if n_users == 0 or n == 0:
        return out
    u = ue / np.maximum(np.linalg.norm(ue, axis=1, keepdims=True), 1e-12)
    a = ae / np.maximum(np.linalg.norm(ae, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-(u @ a.T), axis=1, kind="stable")
    hits_sorted = np.take_along_axis(liked, order, axis=1)
    n_liked = liked.sum(axis=1)
    for k in ks:
        k_eff = min(k, n)
        found = hits_sorted[:, :k_eff].sum(axis=1)
        # log C(N - L, K) - log C(N, K); zero ways when N - L < K
        log_miss = np.where(n - n_liked >= k_eff,
                            gammaln(n - n_liked + 1) - gammaln(n - n_liked - k_eff + 1)
                            - gammaln(n + 1) + gammaln(n - k_eff + 1), -np.inf)
        out[f"hit_rate@{k}"] = float((found > 0).mean())
        out[f"recall@{k}"] = float((found / n_liked).mean())
        out[f"random_hit_rate@{k}"] = float((1 - np.exp(log_miss)).mean())
    return out


LABELS = {"basic_binary": "Basic-Binary", "dcue_1vs1": "DCUE-1vs1", "multi_1vs1": "Multi-1vs1",
          "multi_1vs4": "Multi-1vs4", "metric_1vs1": "Metric-1vs1", "metric_1vs4": "Metric-1vs4"}


BASELINE = "basic_binary"         # the paper's claim: metric learning beats it


CHANCE = {"random": "chance: random scores", "popularity": "chance: track popularity"}


def chance_results(pairs: dict, seed: int, reps: int, level: float = 0.95) -> dict[str, dict]:
    """Table 1's chance rows on one protocol's pairs (ctxtag.embeddings.train.Pairs per split):
    seeded uniform scores (ctxtag.common.chance), and the track's popularity — how many training
    pairs like it (0 for a new track, so new tracks tie) — thresholded like the models (Youden on
    validation) and with the models' bootstrap over users (same seed: the same resamples)."""
    from ctxtag.common.chance import chance_scores

    train = pairs["train"]
    n_rows = 1 + max((int(p.row.max()) for p in pairs.values() if len(p.row)), default=0)
    liked_count = np.bincount(train.row[train.liked == 1], minlength=n_rows).astype(np.float64)
    splits = ("validation", "test", "cold")
    scores = {"random": {k: chance_scores(np.zeros(1), len(pairs[k].row), seed + i)["random"][:, 0]
                         for i, k in enumerate(splits)},
              "popularity": {k: liked_count[pairs[k].row] for k in splits}}
    out = {}
    for name, s in scores.items():
        thr = youden_threshold(pairs["validation"].liked, s["validation"])
        out[name] = {k: liked_vs_disliked(pairs[k].liked, s[k], pairs[k].user, thr) for k in ("test", "cold")}
        if reps > 0:
            test = pairs["test"]
            out[name]["test"]["intervals"] = bootstrap_liked(test.liked, test.user, {name: s["test"]}, {name: thr},
                                                             reps, seed, level)["intervals"][name]
    return out


def _table1_row(label: str, t: dict, c: dict) -> str:
    ci = t.get("intervals") or {}

    def cell(r: dict, k: str) -> str:           # "–": undefined (e.g. no pair predicted liked)
        return "–" if not np.isfinite(r[k]) else f"{r[k]:.3f}{bracket(ci.get(k)) if r is t else ''}"

    return f"| {label} | " + " | ".join([cell(t, "precision"), cell(t, "auc"), cell(t, "user_auc"),
                                         cell(c, "precision"), cell(c, "auc")]) + " |"


def table1(results: dict[float, dict[str, dict]], order: Sequence[str], chance: dict[str, dict] | None = None) -> str:
    """Chen et al. Table 1: precision and AUC per model, one block per context duration; plus the
    per-user AUC and the same figures on new (cold-start) tracks."""
    lines = []
    for duration, models in results.items():
        lines += [f"**Context duration {duration:g} s**", "",
                  "| Model | Precision | AUC | per-user AUC | new tracks: Precision | new tracks: AUC |",
                  "|---|---|---|---|---|---|"]
        for m in order:
            if m in models:
                lines.append(_table1_row(LABELS[m], models[m]["test"], models[m]["cold"]))
        for name, r in (chance or {}).items():       # the same pairs whatever the duration
            lines.append(_table1_row(CHANCE[name], r["test"], r["cold"]))
        lines.append("")
        for m in order:
            d = (models.get(m, {}).get("test", {}).get("vs") or {}).get("auc")
            if d:
                held = "holds" if excludes_zero(d) else "not shown"
                lines.append(f"- AUC, {LABELS[m]} − {LABELS[BASELINE]}: {difference(d)}, "
                             f"p={d['p']:.3f} ({held}; paired bootstrap over users)")
        lines.append("")
    return "\n".join(lines)


def hit_rate_table(rows: dict[str, dict], ks: Sequence[int]) -> str:
    cols = [f"HR@{k}" for k in ks] + [f"recall@{k}" for k in ks] + [f"random HR@{k}" for k in ks]
    lines = ["| Model | users | new tracks | " + " | ".join(cols) + " |", "|---" * (3 + len(cols)) + "|"]
    for name, r in rows.items():
        vals = [r.get(f"hit_rate@{k}") for k in ks] + [r.get(f"recall@{k}") for k in ks] + \
               [r.get(f"random_hit_rate@{k}") for k in ks]
        lines.append(f"| {name} | {r['users']} | {r['new_tracks']} | " +
                     " | ".join("–" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)
