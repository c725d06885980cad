"""Training loop of ICASSP 2020 §4.1: Adadelta (lr 0.1, exponential decay every 1000 iterations),
early stopping on the validation loss with patience 10, keeping the best checkpoint.

Seeded and resumable: ``last.pt`` holds everything needed to continue after an interruption
(model, optimiser, schedule, counters, RNG states) and is only resumed when its fingerprint (the
settings and data it was started with) matches. Each write keeps the one before as
``last.prev.pt``; a checkpoint that does not load (truncated, garbled, not plain data) is moved
aside with a warning and the run resumes from the previous one, else starts afresh. Uses CUDA with
bf16 autocast when present. Tracking (MLflow) is the caller's: it passes ``on_epoch`` and ``on_resume``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ctxtag.common.io import atomic_path
from ctxtag.common.training import EarlyStopping, pick_device, run_epochs
from ctxtag.config import TrainConfig
from ctxtag.tagger.dataset import MelDataset, collate_batch
from ctxtag.tagger.losses import weighted_bce


@dataclass
class TrainResult:
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    history: list[dict] = field(default_factory=list)


def fingerprint(cfg: TrainConfig, seed: int, extra: dict) -> str:
    """What a checkpoint was started with; resuming with anything else would mix two runs."""
    payload = {"train": dataclasses.asdict(cfg), "seed": seed, **extra}
    payload["train"].pop("max_epochs")          # extending a run is allowed
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _loader(ds: MelDataset, cfg: TrainConfig, shuffle: bool, seed: int, device: torch.device) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, generator=gen, collate_fn=collate_batch,
                      num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                      persistent_workers=False, drop_last=False)


def _to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    mel, *rest = (t.to(device, non_blocking=True) for t in batch)
    return (mel.float(), *rest)


def _autocast(device: torch.device, cfg: TrainConfig):
    enabled = cfg.amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict(model: torch.nn.Module, ds: MelDataset, cfg: TrainConfig, device: torch.device
            ) -> tuple[np.ndarray, float]:
    """Probabilities for every sample of ``ds`` (in order) and the mean loss over them."""
    model.eval()
    probs, total, n = [], 0.0, 0
    for batch in _loader(ds, cfg, shuffle=False, seed=0, device=device):
        mel, y, pw, nw = _to_device(batch, device)
        with _autocast(device, cfg):
            logits = model(mel)
        total += float(weighted_bce(logits, y, pw, nw)) * len(y)
        n += len(y)
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
    return (np.concatenate(probs) if probs else np.zeros((0, 0))), total / max(n, 1)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...],
               cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """One optimisation step on a batch already on the device; returns the (detached) loss."""
    mel, y, pw, nw = batch
    with _autocast(device, cfg):
        logits = model(mel)
    loss = weighted_bce(logits, y, pw, nw)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def _rng_state() -> dict:
    """Dropout draws from torch's generators; shuffling has its own, seeded per epoch."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(obj: dict, path: Path) -> None:
    """Written beside ``path`` and renamed over it: a run killed mid-write keeps the old checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _keep_previous(path: Path, previous: Path) -> None:
    """``path`` as it is now also under ``previous`` (a hard link, else a copy; renamed into place),
    before ``path`` is overwritten: at every moment ``path`` holds a whole checkpoint."""
    if not path.exists():
        return
    with atomic_path(previous) as tmp:
        try:
            os.link(path, tmp)
        except OSError:                                 # a file system without hard links
            shutil.copyfile(path, tmp)


@dataclass(frozen=True)
class Checkpoints:
    """Where a run keeps its weights: ``best`` (the best epoch, with ``meta``: what
    ctxtag.tagger.inference.load_cnn loads) and ``last`` (everything a resumed run needs). The
    pipeline takes both from Paths.checkpoint."""

    best: Path
    last: Path

    @property
    def previous(self) -> Path:
        """The ``last`` checkpoint before the latest one, to fall back on when that does not load."""
        return self.last.with_name(f"{self.last.stem}.prev{self.last.suffix}")


def _load_resumable(checkpoints: Checkpoints) -> dict | None:
    """``last.pt``, else (when it does not load) ``last.prev.pt``, read to the CPU; None when neither
    loads. A file that does not load is renamed ``<name>.corrupt-<time>`` beside itself, with a
    warning naming it and the error, so that later runs do not trip over it again. No ``last.pt``
    at all is a fresh start (deleting it starts over), whatever ``last.prev.pt`` holds."""
    if not checkpoints.last.exists():
        return None
    for path in (checkpoints.last, checkpoints.previous):
        if not path.exists():
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)   # tensors and plain data only
            if not isinstance(ckpt, dict):
                raise ValueError(f"holds a {type(ckpt).__name__}, not a checkpoint")
            if path != checkpoints.last:
                print(f"warning: falling back on {path} (epoch {ckpt.get('epoch')})", file=sys.stderr, flush=True)
            return ckpt
        except PermissionError:
            raise                                       # not corrupt: not ours to move
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            # truncated: RuntimeError "PytorchStreamReader failed reading zip archive" or OSError
            # EINVAL; garbled: UnpicklingError; empty: EOFError
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            fallback = "trying the previous one" if path == checkpoints.last else "starting afresh"
            print(f"warning: {path}: cannot load the checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                  f"moved to {aside.name}, {fallback}", file=sys.stderr, flush=True)
    return None


def train(model: torch.nn.Module, train_ds: MelDataset, val_ds: MelDataset, cfg: TrainConfig,
          checkpoints: Checkpoints, seed: int, fp: str,
          on_epoch: Callable[[int, dict], None] | None = None, meta: dict | None = None,
          on_resume: Callable[[list[dict]], None] | None = None) -> TrainResult:
    """Train until early stopping or ``max_epochs``; the best checkpoint carries ``meta`` (contexts, front-end).
    ``on_epoch(epoch, row)`` runs once the epoch is checkpointed; ``on_resume(history)`` once a
    checkpoint is resumed, with the epochs it holds."""
    device = pick_device(cfg.device)
    torch.manual_seed(seed)
    model.to(device, memory_format=torch.channels_last)   # ~25 % faster convolutions on CPU
    opt = torch.optim.Adadelta(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: cfg.lr_decay ** (it // cfg.lr_decay_every))
    # any decrease of the validation loss is an improvement (min_delta 0), as this loop always had;
    # the best weights go to best.pt rather than into memory
    stopper = EarlyStopping(cfg.patience, min_delta=0.0)
    start_epoch, history, resumed = 1, [], None

    last = checkpoints.last
    ckpt = _load_resumable(checkpoints)   # state_dict loading moves the tensors to the device
    if ckpt is not None and ckpt.get("fingerprint") == fp:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        stopper.best, stopper.best_epoch, stopper.waited = ckpt["best_val"], ckpt["best_epoch"], ckpt["bad_epochs"]
        start_epoch, history, resumed = ckpt["epoch"] + 1, ckpt["history"], ckpt["epoch"]
        _set_rng_state(ckpt["rng"])
        if on_resume is not None:
            on_resume(history)

    started = 0.0                                   # an epoch's "seconds" cover training and validation

    def train_epoch(epoch: int) -> dict:
        nonlocal started
        model.train()
        total, n, started = 0.0, 0, time.perf_counter()
        for batch in _loader(train_ds, cfg, shuffle=True, seed=seed + epoch, device=device):
            batch = _to_device(batch, device)
            loss = train_step(model, opt, batch, cfg, device)
            sched.step()
            total += float(loss) * len(batch[0])
            n += len(batch[0])
        return {"train_loss": total / max(n, 1)}

    def validate(row: dict) -> dict:
        _, val_loss = predict(model, val_ds, cfg, device)
        return {"val_loss": val_loss, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - started}

    def checkpoint(row: dict) -> None:
        epoch = row["epoch"]
        if stopper.best_epoch == epoch:
            _save({"model": model.state_dict(), "epoch": epoch, "val_loss": row["val_loss"], "meta": meta or {}},
                  checkpoints.best)
        # everything a resumed run needs to continue as if never interrupted (the same keys as ever,
        # so older checkpoints still resume); the one it replaces stays as the fallback
        _keep_previous(last, checkpoints.previous)
        _save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "epoch": epoch, "best_val": stopper.best, "best_epoch": stopper.best_epoch,
               "bad_epochs": stopper.waited, "history": history, "rng": _rng_state(), "fingerprint": fp}, last)
        if on_epoch is not None:
            on_epoch(epoch, row)

    if not stopper.stopped:                         # a resumed run that had stopped stays stopped
        run_epochs(cfg.max_epochs, train_epoch, validate, stopper, on_epoch=checkpoint,
                   start_epoch=start_epoch, history=history)
    # the run ended with a whole last.pt: the fallback only guards a run in progress, and would
    # double the size of the model folder (a DVC output) if kept
    checkpoints.previous.unlink(missing_ok=True)
    return TrainResult(stopper.best_epoch, stopper.best, len(history), stopper.stopped, resumed, history)
