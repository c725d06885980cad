"""What every training loop here shares: the device, the early-stopping rule, the epoch loop.

The loops differ in what an epoch is (Adadelta on mel batches, Adam on feature blocks or sampled
negatives, SGD on random crops) and agree on the rest: train, validate, record a history row, stop
after ``patience`` epochs without improvement. The small models keep their best weights in memory
(``EarlyStopping(model=...)``); the CNN tagger of ctxtag.tagger.train checkpoints them to disk
instead, so that an interrupted run can resume.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn


def pick_device(name: str) -> torch.device:
    """'auto': CUDA when present, else the CPU; anything else as torch spells it ('cpu', 'cuda:1')."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class EarlyStopping:
    """``step(score, epoch)`` after each epoch: True once ``patience`` epochs in a row failed to
    improve on the best score.

    One rule: a score improves when it beats the best by more than ``min_delta`` — in mode 'min'
    ``score < best - min_delta``, in mode 'max' ``score > best + min_delta``. A NaN never improves
    (every comparison with it is false). The loops keep the thresholds they always had: the small
    models 1e-4 (the default); the CNN tagger 0.0, its strict ``val_loss < best`` (``best - 0.0``
    is ``best`` exactly, so its runs and its checkpoints' counters are unchanged). Mode 'max' is the
    old "negate the score and minimise" bit for bit: IEEE rounding is symmetric, so
    ``-s < -b - d`` holds exactly when ``s > b + d``.

    With ``model``, its weights are copied at every improvement (and before the first epoch, so a
    run that never improves restores its starting point) and ``restore()`` puts them back.
    """

    def __init__(self, patience: int, mode: Literal["min", "max"] = "min", min_delta: float = 1e-4,
                 model: nn.Module | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.patience, self.mode, self.min_delta, self.model = patience, mode, min_delta, model
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.waited = 0, 0       # the checkpointed tagger saves and restores these
        self.state = copy.deepcopy(model.state_dict()) if model is not None else None

    def improves(self, score: float) -> bool:
        if self.mode == "min":
            return score < self.best - self.min_delta
        return score > self.best + self.min_delta

    @property
    def stopped(self) -> bool:
        return self.waited >= self.patience

    def step(self, score: float, epoch: int) -> bool:
        if self.improves(score):
            self.best, self.best_epoch, self.waited = score, epoch, 0
            if self.model is not None:
                self.state = copy.deepcopy(self.model.state_dict())
        else:
            self.waited += 1
        return self.stopped

    def restore(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("EarlyStopping was given no model, so it kept no weights")
        self.model.load_state_dict(self.state)
        return self.model


def run_epochs(max_epochs: int, train_epoch: Callable[[int], dict], validate: Callable[[dict], dict],
               stopper: EarlyStopping, monitor: str = "val_loss", on_epoch: Callable[[dict], None] | None = None,
               start_epoch: int = 1, history: list[dict] | None = None) -> list[dict]:
    """Epochs ``start_epoch..max_epochs`` until ``stopper`` says stop; returns ``history`` (a
    resumed run's rows so far, or a new list) with one row per epoch run appended.

    A row is ``{"epoch": e, **train_epoch(e), **validate(row so far)}`` (``validate`` sees the
    training columns, e.g. to fall back on the training loss without a validation split); its
    ``monitor`` column is what ``stopper`` judges. ``on_epoch(row)`` runs after the stopper has
    seen the epoch, so a checkpoint written there knows whether it was the best — and before the
    loop ends, so the last epoch is checkpointed too.
    """
    history = [] if history is None else history
    for epoch in range(start_epoch, max_epochs + 1):
        row = {"epoch": epoch, **train_epoch(epoch)}
        row |= validate(row)
        history.append(row)
        stop = stopper.step(row[monitor], epoch)
        if on_epoch is not None:
            on_epoch(row)
        if stop:
            break
    return history
