"""Training of the stream context taggers (ctxtag.context.model): Adam on cross-entropy, early
stopping on the validation loss, the best epoch's weights kept."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ctxtag.common.training import EarlyStopping, run_epochs
from ctxtag.config import UserModelConfig
from ctxtag.context.model import ContextTagger


def _tensors(x: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(x[k], dtype=np.float32)) for k in names}


def fit(x_train: dict[str, np.ndarray], y_train: np.ndarray, x_val: dict[str, np.ndarray], y_val: np.ndarray,
        inputs: Sequence[str], n_contexts: int, cfg: UserModelConfig, seed: int
        ) -> tuple[ContextTagger, list[dict]]:
    """The model on the named input blocks, and its per-epoch history (train/val loss)."""
    torch.manual_seed(seed)
    model = ContextTagger({k: x_train[k].shape[1] for k in inputs}, n_contexts, cfg.audio_hidden,
                          cfg.user_hidden, cfg.fused_hidden, cfg.dropout)
    model.fit_scaling({k: x_train[k] for k in inputs})
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = _tensors(x_train, inputs), torch.from_numpy(y_train)
    xv, yv = _tensors(x_val, inputs), torch.from_numpy(y_val)
    gen = torch.Generator().manual_seed(seed)

    def train_epoch(epoch: int) -> dict:
        model.train()
        total = 0.0
        for idx in torch.randperm(len(yt), generator=gen).split(cfg.batch_size):
            loss = loss_fn(model({k: v[idx] for k, v in xt.items()}), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        return {"train_loss": total / max(len(yt), 1)}

    @torch.no_grad()
    def validate(row: dict) -> dict:
        model.eval()
        # no validation split: stop on the training loss rather than never
        return {"val_loss": float(loss_fn(model(xv), yv)) if len(yv) else row["train_loss"]}

    stopper = EarlyStopping(cfg.patience, model=model)
    history = run_epochs(cfg.epochs, train_epoch, validate, stopper)
    return stopper.restore().eval(), history


def predict(model: ContextTagger, x: dict[str, np.ndarray]) -> np.ndarray:
    """Context probabilities (n, n_contexts)."""
    return model.predict_proba(_tensors(x, model.inputs)).numpy()
