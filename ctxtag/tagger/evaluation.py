"""A trained tagger on the test split: Table 1/2 metrics against the observed playlist labels and,
on the generated world, against the complete true labels; the side-by-side markdown table."""

from __future__ import annotations

import numpy as np
import torch

from ctxtag.config import TrainConfig
from ctxtag.tagger import metrics
from ctxtag.tagger.dataset import SplitData
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import predict


def evaluate_tagger(model: ChoiCNN, data: SplitData, truth: tuple[np.ndarray, np.ndarray] | None,
                    contexts: tuple[str, ...], cfg: TrainConfig, threshold: float,
                    device: torch.device) -> tuple[dict, np.ndarray]:
    """(report, test probabilities)."""
    probs, test_loss = predict(model, data.datasets["test"], cfg, device)
    y_obs = data.labels["test"]
    res = {"test_loss": test_loss, "n_test": len(y_obs),
           "observed": metrics.report(y_obs, probs, contexts, threshold)}
    if truth is not None:
        rows = {t: i for i, t in enumerate(truth[0])}
        y_true = truth[1][[rows[t] for t in data.track_ids["test"]]]
        res["truth"] = metrics.report(y_true, probs, contexts, threshold)
    return res, probs


COLUMNS = (("hamming_loss", "HL↓"), ("roc_auc", "AUC"), ("pr_auc", "PR-AUC"), ("recall", "Recall"),
           ("precision", "Precision"), ("f1", "F1"), ("tn_rate", "TN rate"))


def table(results: dict, key: str) -> str:
    head = "| loss configuration | " + " | ".join(label for _, label in COLUMNS) + " |"
    rows = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, res in results.items():
        macro = res[key]["macro"]
        cells = ["–" if macro[m] is None else f"{macro[m]:.2f}" for m, _ in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
