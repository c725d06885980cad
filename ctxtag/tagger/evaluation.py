"""A trained tagger on the test split: Table 1/2 metrics against the observed playlist labels and,
on the generated world, against the complete true labels; the side-by-side markdown table."""

from __future__ import annotations

import numpy as np
import torch

from ctxtag.common.bootstrap import bracket, difference, excludes_zero
from ctxtag.config import TrainConfig
from ctxtag.tagger import metrics
from ctxtag.tagger.dataset import SplitData
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import predict


def evaluate_tagger(model: ChoiCNN, data: SplitData, truth: tuple[np.ndarray, np.ndarray] | None,
                    contexts: tuple[str, ...], cfg: TrainConfig, threshold: float,
                    device: torch.device) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """(report, test probabilities, the labels they were scored against: observed and truth)."""
    probs, test_loss = predict(model, data.datasets["test"], cfg, device)
    labels = {"observed": data.labels["test"]}
    if truth is not None:
        rows = {t: i for i, t in enumerate(truth[0])}
        labels["truth"] = truth[1][[rows[t] for t in data.track_ids["test"]]]
    res = {"test_loss": test_loss, "n_test": len(labels["observed"]),
           **{key: metrics.report(y, probs, contexts, threshold) for key, y in labels.items()}}
    return res, probs, labels


COLUMNS = (("hamming_loss", "HL↓"), ("roc_auc", "AUC"), ("pr_auc", "PR-AUC"), ("recall", "Recall"),
           ("precision", "Precision"), ("f1", "F1"), ("tn_rate", "TN rate"))


def table(results: dict, key: str, boot: dict | None = None, row: str = "loss configuration") -> str:
    """Macro metrics per configuration (``row``: what a row is); with ``boot`` (metrics.bootstrap),
    each with its interval, then each row's paired difference from the baseline."""
    head = f"| {row} | " + " | ".join(label for _, label in COLUMNS) + " |"
    rows = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, res in results.items():
        macro = res[key]["macro"]
        ci = (boot or {}).get("intervals", {}).get(name, {})
        cells = ["–" if macro[m] is None else f"{macro[m]:.2f}" + bracket(ci.get(m)) for m, _ in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if boot and boot.get("paired"):
        level = f"{boot['level']:.0%}"
        rows += ["", f"Brackets: {level} percentile bootstrap intervals over the test tracks ({boot['reps']} "
                 f"resamples). Paired differences from `{boot['baseline']}` (the same resamples), {level} interval "
                 "and two-sided p; **bold** where the interval excludes 0:", "",
                 f"| {row} | " + " | ".join(f"Δ {label}" for _, label in COLUMNS) + " |",
                 "|---" * (len(COLUMNS) + 1) + "|"]
        for name, diffs in boot["paired"].items():
            cells = [_difference(diffs.get(m)) for m, _ in COLUMNS]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _difference(d: dict | None) -> str:
    if not d or d["mean"] is None or None in d["interval"].values():
        return "–"
    text = f"{difference(d)} p={d['p']:.2f}"
    return f"**{text}**" if excludes_zero(d) else text
