"""The user-aware context tagger (ISMIR 2020) and its device/time extension (ISMIR 2022), top to bottom.

    audio embedding (256, the Choi CNN's hidden layer)  -> FC audio_hidden -> ReLU      (audio branch)
    user features (history embedding, context shares)   -> FC user_hidden  -> ReLU      (user branch)
    [situation (device, network, hour/weekday sin/cos)  -> FC user_hidden  -> ReLU]     (situation branch)
    concatenate -> dropout -> FC fused_hidden -> ReLU -> dropout -> FC n_contexts -> softmax

Inputs are standardised by buffers fitted on the training rows, so a saved model carries its own
scaling. The output is single-label (one context per user/track/situation), as in the paper,
trained with cross-entropy.

The audio branch starts from the trained CNN's embedding rather than the mel: the CNN is the audio
auto-tagger of ICASSP 2020 (trained once), and re-training it per split and per model on a CPU
would dominate the pipeline. That the audio branch is frozen below its last FC layer is our
choice; the poster does not say whether it was fine-tuned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardise(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray) -> Standardise:
        self.mean.copy_(torch.from_numpy(x.mean(axis=0)))
        self.std.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-6)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Branch(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = Standardise(dim_in)
        self.fc = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.norm(x)))


class ContextTagger(nn.Module):
    """Branches by name (``audio``, ``user``, ``situation``), fused into one context classifier."""

    def __init__(self, dims: dict[str, int], n_contexts: int, audio_hidden: int = 128, user_hidden: int = 64,
                 fused_hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        width = {"audio": audio_hidden}
        self.inputs = list(dims)
        self.branches = nn.ModuleDict({k: Branch(d, width.get(k, user_hidden)) for k, d in dims.items()})
        fused_in = sum(width.get(k, user_hidden) for k in dims)
        self.dropout = nn.Dropout(dropout)
        self.fused = nn.Linear(fused_in, fused_hidden)
        self.head = nn.Linear(fused_hidden, n_contexts)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """x: block name -> (batch, dim) -> logits (batch, n_contexts)."""
        h = torch.cat([self.branches[k](x[k]) for k in self.inputs], dim=1)
        h = torch.relu(self.fused(self.dropout(h)))
        return self.head(self.dropout(h))

    @torch.no_grad()
    def predict_proba(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self(x), dim=1)

    # The fused layer is linear in the concatenation, so (in eval mode, dropout off) its input splits
    # into one term per branch: W [h_a; h_u] + b = W_a h_a + W_u h_u + b. Serving computes a track's
    # term once per catalogue and a user's once per request (ctxtag.serving.recommend).
    @torch.no_grad()
    def fused_term(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Branch ``name``'s share of the fused layer's pre-activation (no bias), (batch, fused_hidden)."""
        widths = [self.branches[k].fc.out_features for k in self.inputs]
        i = self.inputs.index(name)
        w = self.fused.weight[:, sum(widths[:i]):sum(widths[:i + 1])]
        return self.branches[name](x) @ w.T

    def fit_scaling(self, x: dict[str, np.ndarray]) -> None:
        for k in self.inputs:
            self.branches[k].norm.fit(x[k])
