"""Early stopping that keeps the best epoch's weights in memory (the small models; the CNN tagger
of ctxtag.tagger.train checkpoints to disk instead, so an interrupted run can resume)."""

from __future__ import annotations

import copy

from torch import nn


class EarlyStopping:
    """``step(score)`` after each epoch: True once ``patience`` epochs in a row failed to improve
    the best score by more than ``min_delta`` (lower is better, or higher with ``higher=True``;
    a NaN score never improves). ``restore()`` puts the best epoch's weights back."""

    def __init__(self, model: nn.Module, patience: int, higher: bool = False, min_delta: float = 1e-4):
        self.model, self.patience, self.sign, self.min_delta = model, patience, -1.0 if higher else 1.0, min_delta
        self.best, self.state, self.waited = float("inf"), copy.deepcopy(model.state_dict()), 0

    def step(self, score: float) -> bool:
        if self.sign * score < self.best - self.min_delta:
            self.best, self.state, self.waited = self.sign * score, copy.deepcopy(self.model.state_dict()), 0
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self) -> nn.Module:
        self.model.load_state_dict(self.state)
        return self.model
