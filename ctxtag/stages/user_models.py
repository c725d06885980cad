"""`ctxtag user-models`: for each split type (cold user, cold track, warm), the user-aware tagger,
the situational GBT and the joint model (ctxtag.context.experiment) trained and evaluated on the
labelled streams; models, DVC metrics, plots, MLflow runs."""

from __future__ import annotations

import dataclasses

import pandas as pd

from ctxtag.common.headline import write_report
from ctxtag.common.io import read_split, write_json, write_text
from ctxtag.common.plots import bar_chart
from ctxtag.common.progress import progress
from ctxtag.common.tracking import Tracker
from ctxtag.config import Params
from ctxtag.context import artifacts
from ctxtag.context.evaluation import MODELS, table
from ctxtag.context.experiment import mlflow_metrics, run_split, summary
from ctxtag.context.features import blocks, targets
from ctxtag.context.splits import assign

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
# (the chance rows' too: what a figure has to beat; the joint model's acc@k interval)
HEADLINE = ["*.*.stream.accuracy@*", "*.*.so_sg.f1", "*.audio_user_situation.intervals.accuracy@*.*"]


def _log_mlflow(params: Params, results: dict[str, dict], artifacts_: list) -> None:
    """One run per split type; MLflow down: a warning, the outputs are written already."""
    tracker = Tracker(params.user_models.experiment)
    for kind, reports in results.items():
        tracker.call(_log_run, kind, reports, params, artifacts_)


def _log_run(kind: str, reports: dict, params: Params, artifacts_: list) -> None:
    import mlflow

    from ctxtag.common.tracking import log_metrics, log_params

    with mlflow.start_run(run_name=f"user-models-{kind}"):
        mlflow.set_tag("split_kind", kind)
        log_params({k: v for k, v in dataclasses.asdict(params.user_models).items() if k != "splits"}, "user_models")
        log_params({f"n_{s}": n for s, n in reports["_sizes"].items()})
        log_metrics(mlflow_metrics(reports))
        for path in artifacts_:
            mlflow.log_artifact(str(path))


def run(params: Params) -> dict:
    p, cfg = params.paths, params.user_models
    frame = pd.read_parquet(p.streams_parquet)
    x = blocks(frame, params.contexts, params.logs.devices, params.logs.networks, params.logs.genders,
               cfg.history_dim)
    y = targets(frame, params.contexts)
    track_split = read_split(p.split_csv)
    artists = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")["artist_id"]
    results: dict[str, dict] = {}
    for kind in progress(cfg.splits, total=len(cfg.splits), description="user models"):
        split = assign(frame, kind, params.split, params.seed, track_split, artists)
        reports, models = run_split(frame, x, y, split, params)
        artifacts.save(models, p.user_models / kind, params.contexts, cfg)
        results[kind] = reports

    md = table({k: {m: r for m, r in v.items() if m != "_sizes"} for k, v in results.items()}, cfg.top_k)
    write_text("# Audio-only vs audio+user vs audio+user+device/time (test streams)\n\n" + md + "\n",
               p.reports / "user_models.md")
    plots = [
        bar_chart({MODELS[m][0]: [results[k][m]["stream"][f"accuracy@{cfg.top_k}"] for k in results] for m in MODELS},
                  list(results), p.plot("user_models_accuracy_at_k"),
                  f"accuracy@{cfg.top_k} of the stream's context, per split type", f"accuracy@{cfg.top_k}"),
        bar_chart({MODELS[m][0]: [results[kind][m]["so_sg"]["per_context"][c]["f1"] or 0.0 for c in params.contexts]
                   for m in MODELS for kind in [cfg.splits[-1]]},
                  list(params.contexts), p.plot("user_models_so_sg_f1"),
                  f"SO-SG F1 per context ({cfg.splits[-1]} split)", "F1"),
    ]
    headline = summary(results)
    write_report(headline, p, "user_models", HEADLINE)
    write_json(results, p.report("user_models_full"))
    if cfg.log_mlflow:
        _log_mlflow(params, results, [p.reports / "user_models.md", *plots])
    return headline
