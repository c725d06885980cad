"""One model's user-centric report on a split's test streams, and the side-by-side table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctxtag.context import metrics as um

# model name -> (label in the table, multi-label output?)
MODELS: dict[str, tuple[str, bool]] = {
    "audio": ("audio only (CNN tagger)", True),
    "audio_user": ("audio + user (ISMIR 2020)", False),
    "situational": ("device/time + user, GBT (ISMIR 2022)", False),
    "audio_user_situation": ("audio + user + device/time", False),
}


def report(model: str, prob: np.ndarray, y: np.ndarray, user_ids: np.ndarray, track_ids: np.ndarray,
           contexts: Sequence[str], k: int, threshold: float) -> dict:
    multi = MODELS[model][1]
    out = {"stream": um.stream_accuracy(prob, y, k), "so_sg": um.so_sg(y, prob, contexts),
           "satisfaction": um.user_satisfaction(user_ids, track_ids, y, prob, single=not multi, threshold=threshold)}
    if multi:      # the audio tagger's own, multi-label protocols (and its single-label satisfaction)
        out["mo_mg"] = um.mo_mg(track_ids, y, prob, contexts, threshold)
        out["mo_sg"] = um.mo_sg(y, prob, contexts, threshold)
        out["satisfaction_single"] = um.user_satisfaction(user_ids, track_ids, y, prob, single=True)
    return out


def table(results: dict[str, dict[str, dict]], k: int) -> str:
    """One row per (split kind, model): accuracy, acc@k, weighted acc@k (ISMIR 2022), SO-SG macro
    F1 and AUC, user-satisfaction accuracy and F1 (ISMIR 2020)."""
    cols = ("accuracy", f"acc@{k}", f"w-acc@{k}", "SO-SG F1", "SO-SG AUC", "user acc", "user F1")
    lines = ["| split | model | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    for kind, models in results.items():
        for model, (label, _) in MODELS.items():
            r = models.get(model)
            if r is None:
                continue
            vals = (r["stream"]["accuracy"], r["stream"][f"accuracy@{k}"], r["stream"][f"weighted_accuracy@{k}"],
                    r["so_sg"]["macro"]["f1"], r["so_sg"]["macro"]["roc_auc"], r["satisfaction"]["accuracy"],
                    r["satisfaction"]["f1"])
            lines.append(f"| {kind} | {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)
