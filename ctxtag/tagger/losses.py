"""Binary cross-entropy and the sample-level weighted cross-entropy of ICASSP 2020 Eq. 2:

    CE_w(x_i, y_i) = - sum_c [ w_ic * y_ic * log f_c(x_i) + w̄_ic * (1 - y_ic) * log(1 - f_c(x_i)) ]

with log f = log-sigmoid(z) and log(1 - f) = log-sigmoid(-z) computed from the logits z. With
all weights 1 this is the plain BCE (summed over contexts, averaged over the batch).

The five configurations of Table 2 choose which weights replace the ones:
none, neg_exact, neg_ignore_zeros, both_exact, both_ignore_zeros.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ctxtag.vocabulary import LOSS_CONFIGS


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None,
                 neg_weight: torch.Tensor | None = None) -> torch.Tensor:
    logits, targets = logits.float(), targets.float()
    pos = targets * F.logsigmoid(logits)
    neg = (1.0 - targets) * F.logsigmoid(-logits)
    if pos_weight is not None:
        pos = pos * pos_weight
    if neg_weight is not None:
        neg = neg * neg_weight
    return -(pos + neg).sum(dim=1).mean()


def weight_arrays(config: str, weights: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(positive, negative) weight matrices a loss configuration uses; None means all ones."""
    if config not in LOSS_CONFIGS:
        raise ValueError(f"unknown loss configuration {config!r}; one of {LOSS_CONFIGS}")
    if config == "none":
        return None, None
    scheme = "neg_exact" if config.endswith("exact") else "neg_ignore_zeros"
    pos = weights["pos_tfidf"] if config.startswith("both") else None
    return pos, weights[scheme]
