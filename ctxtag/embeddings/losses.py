"""Losses of Chen et al. (audio embeddings from listening data), on similarities M(r, u) of a user
and tracks: the max-margin hinge loss of Eq. 3 (metric models) and the two classification baselines
of Table 1 (Basic-Binary, Multi). Each takes ``sim`` (batch, 1 + n): column 0 the liked track,
then n disliked tracks (Basic-Binary: one track per row, with its label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_margin_hinge(sim: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Eq. 3, L(u, R) = sum_i max[0, margin - M(r+, u) + M(r_i-, u)], averaged over the batch."""
    return torch.clamp(margin - sim[:, :1] + sim[:, 1:], min=0).sum(dim=1).mean()


def multi_softmax(sim: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Multi-1vsN: softmax over the liked and n disliked tracks, categorical cross-entropy on the liked."""
    target = torch.zeros(len(sim), dtype=torch.long, device=sim.device)
    return F.cross_entropy(scale * sim, target)


def basic_binary(sim: torch.Tensor, liked: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Basic-Binary: one track per row, sigmoid of its (affine) similarity, binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(scale * sim[:, 0] + bias, liked.float())
