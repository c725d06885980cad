"""`ctxtag train --loss CONFIG`: train the CNN with one loss configuration of Table 2, tracked in MLflow."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from ctxtag.audio import mel_set
from ctxtag.common.io import write_json
from ctxtag.common.plots import line_chart
from ctxtag.common.tracking import log_metrics, log_params, setup_mlflow, start_resumable_run
from ctxtag.common.training import pick_device
from ctxtag.config import Params
from ctxtag.tagger.dataset import load_splits
from ctxtag.tagger.inference import load_cnn, model_meta
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import Checkpoints, fingerprint, train


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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

    mlflow = None
    if cfg.log_mlflow:
        import mlflow

        setup_mlflow(cfg.experiment)
        if not start_resumable_run(p.mlflow_run(cfg.loss), fp, f"cnn-{cfg.loss}"):
            log_params({**{f"train.{k}": v for k, v in dataclasses.asdict(cfg).items() if k != "configs"},
                        "seed": params.seed, "n_parameters": model.num_parameters(),
                        "n_train": len(data.datasets["train"]), "n_validation": len(data.datasets["validation"]),
                        "device": str(pick_device(cfg.device)), "fingerprint": fp})
            mlflow.log_text(model.summary(), "model_summary.txt")

    def on_epoch(epoch: int, row: dict) -> None:
        print(f"[{cfg.loss}] epoch {epoch:3d}  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  lr {row['lr']:.4g}")
        if mlflow is not None:
            log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)

    try:
        checkpoints = Checkpoints(p.checkpoint(cfg.loss), p.checkpoint(cfg.loss, "last"))
        result = train(model, data.datasets["train"], data.datasets["validation"], cfg, checkpoints, params.seed, fp,
                       on_epoch=on_epoch, meta=meta)
    except BaseException:
        if mlflow is not None:
            mlflow.end_run(status="KILLED")         # resumable: the next run continues this one
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
    if mlflow is not None and epochs_now == 0:
        mlflow.end_run()                              # a finished run resumed: nothing new to log
    elif mlflow is not None:
        best, _ = load_cnn(p.checkpoint(cfg.loss))
        _log_model(mlflow, best, data.datasets["validation"])
        mlflow.log_artifact(str(plot), "plots")
        log_metrics({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch})
        mlflow.end_run()
    return summary


def _log_model(mlflow, model: ChoiCNN, ds) -> None:
    """The CNN with a signature (mel batch -> 15 probabilities-as-logits) and one input example."""
    from mlflow.models import infer_signature

    example = ds[0][0].float().numpy()[None] if len(ds) else np.zeros((1, 96, 646), np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    mlflow.pytorch.log_model(model, name="model", signature=infer_signature(example, out),
                             input_example=example, serialization_format="pickle")
