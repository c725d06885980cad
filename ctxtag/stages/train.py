"""`ctxtag train --loss CONFIG`: train the CNN with one loss configuration of Table 2, tracked in MLflow.

Tracking never stops the training: with MLflow unreachable (or gone mid-run) it warns once and goes
on without it, writing checkpoints and reports as usual. Rerun once it is back: the checkpoint
resumes, and the MLflow run gets what it missed (parameters, every epoch once, the model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ctxtag.audio import mel_set
from ctxtag.common.io import file_sha256, write_json
from ctxtag.common.plots import line_chart
from ctxtag.common.tracking import (
    Tracker,
    end_run,
    log_metrics,
    log_missing_epochs,
    log_params,
    start_resumable_run,
)
from ctxtag.common.training import pick_device
from ctxtag.config import Params
from ctxtag.tagger.dataset import load_splits
from ctxtag.tagger.inference import model_meta
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import Checkpoints, fingerprint, train


def _file_hash(path: Path) -> str:
    return file_sha256(path)[:16]


def run(params: Params, loss: str | None = None) -> dict:
    cfg = dataclasses.replace(params.train, loss=loss or params.train.loss)
    p = params.paths
    data = load_splits(p, params.contexts, cfg.loss)
    torch.manual_seed(params.seed)
    model = ChoiCNN(params.audio.n_mels, params.audio.n_frames, len(params.contexts), dropout=cfg.dropout)
    print(model.summary())
    fp = fingerprint(cfg, params.seed, {
        "contexts": params.contexts, "audio": dataclasses.asdict(params.audio),
        "features": _file_hash(mel_set.index_csv(p.features)), "labels": _file_hash(p.labels_csv),
        "split": _file_hash(p.split_csv), "weights": _file_hash(p.weights_npz)})
    out = p.model_dir(cfg.loss)
    out.mkdir(parents=True, exist_ok=True)
    meta = model_meta(params.contexts, params.audio, cfg.dropout, cfg.loss)

    tracker = Tracker(cfg.experiment if cfg.log_mlflow else None)
    if tracker.call(start_resumable_run, p.mlflow_run(cfg.loss), fp, f"cnn-{cfg.loss}") is False:    # a new run
        tracker.call(_log_start, model, cfg, params.seed, data, fp)

    def on_epoch(epoch: int, row: dict) -> None:
        print(f"[{cfg.loss}] epoch {epoch:3d}  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  lr {row['lr']:.4g}")
        tracker.call(log_missing_epochs, [row])     # not twice when resumed from an older checkpoint

    def on_resume(history: list[dict]) -> None:     # epochs a killed run checkpointed but never logged
        tracker.call(log_missing_epochs, history)

    try:
        checkpoints = Checkpoints(p.checkpoint(cfg.loss), p.checkpoint(cfg.loss, "last"))
        result = train(model, data.datasets["train"], data.datasets["validation"], cfg, checkpoints, params.seed, fp,
                       on_epoch=on_epoch, meta=meta, on_resume=on_resume)
    except BaseException:
        tracker.call(end_run, "KILLED")             # resumable: the next run continues this one
        raise
    epochs_now = result.epochs_run - (result.resumed_from or 0)
    # timings come from the history kept in last.pt, so a resumed run still reports all epochs
    seconds = sum(h["seconds"] for h in result.history)
    summary = {"loss": cfg.loss, "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
               "resumed_from_epoch": result.resumed_from, "device": str(pick_device(cfg.device)),
               "n_parameters": model.num_parameters(), "seconds_training": seconds,
               "train_samples_per_s": len(data.datasets["train"]) * result.epochs_run / seconds if seconds else None}
    hist = result.history
    plot = p.plot(f"train_loss_{cfg.loss}")
    line_chart({"train": [h["train_loss"] for h in hist], "validation": [h["val_loss"] for h in hist]},
               [h["epoch"] for h in hist], plot, f"Loss per epoch ({cfg.loss})", "epoch", "loss")
    write_json(summary, p.report(f"train/{cfg.loss}"))
    # a finished run resumed has nothing new to log, unless MLflow missed its end the first time
    if epochs_now > 0 or tracker.call(_has_checkpoint) is False:
        tracker.call(_log_end, p.checkpoint(cfg.loss), plot, result)
    tracker.call(end_run)
    return summary


def _log_start(model: ChoiCNN, cfg, seed: int, data, fp: str) -> None:
    import mlflow

    log_params({**{f"train.{k}": v for k, v in dataclasses.asdict(cfg).items() if k != "configs"},
                "seed": seed, "n_parameters": model.num_parameters(),
                "n_train": len(data.datasets["train"]), "n_validation": len(data.datasets["validation"]),
                "device": str(pick_device(cfg.device)), "fingerprint": fp})
    mlflow.log_text(model.summary(), "model_summary.txt")


def _log_end(best_pt: Path, plot: Path, result) -> None:
    """The best checkpoint (what `ctxtag register` packages as the registered pyfunc:
    ctxtag.platform.registry), the loss plot and the best epoch's figures."""
    import mlflow

    mlflow.log_artifact(str(best_pt), CHECKPOINT_ARTIFACT)
    mlflow.log_artifact(str(plot), "plots")
    log_metrics({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch})


CHECKPOINT_ARTIFACT = "checkpoint"      # the run's best.pt, under this artifact folder


def _has_checkpoint() -> bool:
    import mlflow

    return bool(mlflow.MlflowClient().list_artifacts(mlflow.active_run().info.run_id, CHECKPOINT_ARTIFACT))
