"""One model's user-centric report on a split's test streams, and the side-by-side table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctxtag.common.bootstrap import bracket, difference, excludes_zero
from ctxtag.common.chance import chance_scores
from ctxtag.context import metrics as um

# model name -> (label in the table, multi-label output?)
MODELS: dict[str, tuple[str, bool]] = {
    "audio": ("audio only (CNN tagger)", True),
    "audio_user": ("audio + user (ISMIR 2020)", False),
    "situational": ("device/time + user, GBT (ISMIR 2022)", False),
    "audio_user_situation": ("audio + user + device/time", False),
    # chance under the same protocols: what a number above has to beat
    "random": ("chance: random scores", False),
    "popularity": ("chance: training popularity", False),
}


def baselines(y_train: np.ndarray, n_test: int, m: int, seed: int) -> dict[str, np.ndarray]:
    """Scores of the two chance models (ctxtag.common.chance) for the test streams: seeded
    uniform noise, and the training streams' context frequencies (the same ranking for everyone)."""
    return chance_scores(np.bincount(y_train, minlength=m) / max(len(y_train), 1), n_test, seed)


def report(model: str, prob: np.ndarray, y: np.ndarray, user_ids: np.ndarray, track_ids: np.ndarray,
           contexts: Sequence[str], k: int, threshold: float) -> dict:
    multi = MODELS[model][1]
    out = {"stream": um.stream_accuracy(prob, y, k), "so_sg": um.so_sg(y, prob, contexts),
           "satisfaction": um.user_satisfaction(user_ids, track_ids, y, prob, single=not multi, threshold=threshold,
                                                per_user_scores=True),
           "satisfaction_all": um.user_satisfaction(user_ids, track_ids, y, prob, single=not multi,
                                                    threshold=threshold, columns="all")}
    if multi:      # the audio tagger's own, multi-label protocols (and its single-label satisfaction)
        out["mo_mg"] = um.mo_mg(track_ids, y, prob, contexts, threshold)
        out["mo_sg"] = um.mo_sg(y, prob, contexts, threshold)
        out["satisfaction_single"] = um.user_satisfaction(user_ids, track_ids, y, prob, single=True)
    return out


# the differences the README states, tested on the same user resamples
PAIRS = (("audio_user", "audio"), ("audio_user_situation", "audio_user"), ("audio_user_situation", "situational"),
         ("situational", "popularity"))


def table(results: dict[str, dict[str, dict]], k: int) -> str:
    """One row per (split kind, model): accuracy, acc@k, weighted acc@k (ISMIR 2022), SO-SG macro
    F1 and AUC, user-satisfaction accuracy and F1 (ISMIR 2020: over the user's own contexts), and
    its F1 over all contexts; the chance models' rows under each split, and the share of users
    with a single context (whom any single-label model satisfies under the poster's protocol)."""
    cols = ("accuracy", f"acc@{k}", f"w-acc@{k}", "SO-SG F1", "SO-SG AUC", "user acc", "user F1",
            "user F1, all ctx")
    lines = ["| split | model | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    boots = {}
    for kind, models in results.items():
        boot = models.get("_bootstrap", {}).get("intervals", {})
        boots[kind] = models.get("_bootstrap")
        for model, (label, _) in MODELS.items():
            r = models.get(model)
            if r is None:
                continue
            ci = boot.get(model, {})
            vals = ((r["stream"]["accuracy"], None), (r["stream"][f"accuracy@{k}"], ci.get(f"accuracy@{k}")),
                    (r["stream"][f"weighted_accuracy@{k}"], None), (r["so_sg"]["macro"]["f1"], None),
                    (r["so_sg"]["macro"]["roc_auc"], None), (r["satisfaction"]["accuracy"], None),
                    (r["satisfaction"]["f1"], ci.get("user_f1")), (r.get("satisfaction_all", {}).get("f1"), None))
            lines.append(f"| {kind} | {label} | " + " | ".join(_cell(v, c) for v, c in vals) + " |")
    shares = {kind: next(iter(models.values()))["satisfaction"].get("single_context_users")
              for kind, models in results.items() if models}
    lines.append("")
    lines.append("Users with a single context in the test streams (any single-label model, chance included, "
                 "scores 1.0 on them under the user-satisfaction protocol): "
                 + ", ".join(f"{kind} {s:.0%}" for kind, s in shares.items() if s is not None) + ".")
    first = next((b for b in boots.values() if b), None)
    if first:
        lines.append("")
        lines.append(f"Brackets: {first['level']:.0%} percentile bootstrap intervals over test users "
                     f"({first['reps']} resamples; every column's are in user_models.json). Paired differences "
                     f"(same resamples), acc@{k}:")
        lines.append("")
        for kind, boot in boots.items():
            for pair, diffs in (boot or {}).get("paired", {}).items():
                d = diffs.get(f"accuracy@{k}")
                if d:
                    held = "holds" if excludes_zero(d) else "not shown"
                    lines.append(f"- {kind}, {pair}: {difference(d)}, p={d['p']:.3f} ({held})")
    return "\n".join(lines)


def _cell(value: float | None, ci: dict | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + bracket(ci)
