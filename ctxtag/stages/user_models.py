"""`ctxtag user-models`: for each split type (cold user, cold track, warm), train the user-aware
tagger, the situational GBT and the joint model on the labelled streams, and evaluate them beside
the audio-only tagger with the user-centric protocols; DVC metrics, plots, MLflow runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import torch

from ctxtag.common.io import write_json
from ctxtag.common.plots import bar_chart
from ctxtag.common.progress import progress
from ctxtag.config import Params
from ctxtag.context import situational
from ctxtag.context import train as user_train
from ctxtag.context.evaluation import MODELS, report, table
from ctxtag.context.features import blocks, targets
from ctxtag.context.splits import assign

# the neural models and the inputs they see (the audio-only model is the tagger's own output)
NEURAL = {"audio_user": ("audio", "user"), "audio_user_situation": ("audio", "user", "situation")}
GBT = {"situational": ("situation", "user")}


def _rows(x: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in x.items()}


def run_split(kind: str, frame: pd.DataFrame, x: dict[str, np.ndarray], y: np.ndarray, split: np.ndarray,
              params: Params) -> tuple[dict, dict]:
    """(reports per model, trained models) of one split kind."""
    cfg, m = params.user_models, len(params.contexts)
    tr, va, te = (split == s for s in ("train", "validation", "test"))
    models: dict = {}
    probs = {"audio": x["audio_probs"][te]}
    for name, inputs in NEURAL.items():
        model, history = user_train.fit(_rows(x, tr), y[tr], _rows(x, va), y[va], inputs, m, cfg, params.seed)
        models[name] = (model, history)
        probs[name] = user_train.predict(model, _rows(x, te))
    for name, inputs in GBT.items():
        model = situational.fit(_rows(x, tr), y[tr], _rows(x, va), y[va], inputs, cfg, params.seed)
        models[name] = (model, [{"iterations": int(model.n_iter_)}])
        probs[name] = situational.predict(model, _rows(x, te), m)
    users, tracks = frame["user_id"].to_numpy()[te], frame["track_id"].to_numpy()[te]
    reports = {name: report(name, probs[name], y[te], users, tracks, params.contexts, cfg.top_k, cfg.threshold)
               for name in MODELS}
    reports["_sizes"] = {s: int((split == s).sum()) for s in ("train", "validation", "test")}
    return reports, models


def _save(models: dict, kind: str, params: Params) -> None:
    import joblib

    out = params.paths.user_models / kind
    out.mkdir(parents=True, exist_ok=True)
    for name, (model, history) in models.items():
        if isinstance(model, torch.nn.Module):
            torch.save({"state_dict": model.state_dict(), "inputs": model.inputs,
                        "dims": {k: model.branches[k].fc.in_features for k in model.inputs},
                        "contexts": list(params.contexts), "config": dataclasses.asdict(params.user_models),
                        "history": history}, out / f"{name}.pt")
        else:
            joblib.dump(model, out / f"{name}.joblib")
        (out / f"{name}.history.json").write_text(json.dumps(history))


def _log_mlflow(kind: str, reports: dict, params: Params, artifacts: list) -> None:
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    setup_mlflow(params.user_models.experiment)
    with mlflow.start_run(run_name=f"user-models-{kind}"):
        mlflow.set_tag("split_kind", kind)
        mlflow.log_params({f"user_models.{k}": v for k, v in dataclasses.asdict(params.user_models).items()
                           if k != "splits"})
        mlflow.log_params({f"n_{s}": n for s, n in reports["_sizes"].items()})
        flat = {}
        for model in MODELS:
            r = reports[model]
            flat.update({f"{model}.{k}": v for k, v in r["stream"].items()})
            for proto in ("so_sg", "mo_sg", "mo_mg"):
                if proto in r:
                    flat.update({f"{model}.{proto}.{k}": v for k, v in r[proto]["macro"].items() if v is not None})
            flat.update({f"{model}.satisfaction.{k}": v for k, v in r["satisfaction"].items() if k != "users"})
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in flat.items()})   # '@' is not allowed
        for path in artifacts:
            mlflow.log_artifact(str(path))


def run(params: Params) -> dict:
    p, cfg = params.paths, params.user_models
    frame = pd.read_parquet(p.streams / "streams.parquet")
    x = blocks(frame, params.contexts, params.logs.devices, params.logs.networks, params.logs.genders,
               cfg.history_dim)
    y = targets(frame, params.contexts)
    track_split = pd.read_csv(p.splits / "split.csv", dtype=str).set_index("track_id")["split"]
    artists = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")["artist_id"]
    results: dict[str, dict] = {}
    for kind in progress(cfg.splits, total=len(cfg.splits), description="user models"):
        split = assign(frame, kind, params.split, params.seed, track_split, artists)
        reports, models = run_split(kind, frame, x, y, split, params)
        _save(models, kind, params)
        results[kind] = reports

    md = table({k: {m: r for m, r in v.items() if m != "_sizes"} for k, v in results.items()}, cfg.top_k)
    (p.reports / "user_models.md").write_text(
        "# Audio-only vs audio+user vs audio+user+device/time (test streams)\n\n" + md + "\n")
    plots = [
        bar_chart({MODELS[m][0]: [results[k][m]["stream"][f"accuracy@{cfg.top_k}"] for k in results] for m in MODELS},
                  list(results), p.reports / "plots/user_models_accuracy_at_k.png",
                  f"accuracy@{cfg.top_k} of the stream's context, per split type", f"accuracy@{cfg.top_k}"),
        bar_chart({MODELS[m][0]: [results[kind][m]["so_sg"]["per_context"][c]["f1"] or 0.0 for c in params.contexts]
                   for m in MODELS for kind in [cfg.splits[-1]]},
                  list(params.contexts), p.reports / "plots/user_models_so_sg_f1.png",
                  f"SO-SG F1 per context ({cfg.splits[-1]} split)", "F1"),
    ]
    summary = {kind: {"sizes": r["_sizes"], **{m: {"stream": r[m]["stream"], "so_sg": r[m]["so_sg"]["macro"],
                                                     "satisfaction": r[m]["satisfaction"]} for m in MODELS}}
               for kind, r in results.items()}
    write_json(summary, p.reports / "user_models.json")
    write_json(results, p.reports / "user_models_full.json")
    if cfg.log_mlflow:
        for kind, r in results.items():
            _log_mlflow(kind, r, params, [p.reports / "user_models.md", *plots])
    return summary
