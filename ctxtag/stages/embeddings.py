"""`ctxtag embeddings`: Chen et al. on the listening logs' liked / disliked tracks
(ctxtag.embeddings.experiment), written out: the branches, the AE / UE tables that
`ctxtag publish-features` pushes to Feast, reports/embeddings.{md,json}, plots, MLflow runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.audio import mel_set
from ctxtag.common.headline import write_report
from ctxtag.common.io import atomic_path, read_matrix, read_split, write_json, write_text
from ctxtag.common.plots import bar_chart, line_chart, roc_pr_curves
from ctxtag.common.training import pick_device
from ctxtag.config import Params
from ctxtag.embeddings import report
from ctxtag.embeddings.artifacts import save_audio_branch, save_user_branch
from ctxtag.embeddings.evaluation import BASELINE, LABELS, bootstrap_liked, chance_results
from ctxtag.embeddings.experiment import Experiment, run_experiment, serving_tables, transfer_study
from ctxtag.listening.lake import read_lake

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
HEADLINE = ["table1.*.*.test.auc", "table1.*.*.cold.auc", "by_user.test.auc", "table1.*.*.test.intervals.auc.*",
            "table1.*.*.test.vs.auc.*"]


def _plots(exp: Experiment, params: Params) -> list[Path]:
    cfg, p, per_user = params.embeddings, params.paths, exp.results["per_user"]
    hr_rows = report.hit_rate_rows(exp, cfg)
    test_pairs = exp.protocols["per_user"].pairs["test"]
    cols = [f"{LABELS[m]}-{cfg.best_duration:g}s" for m in cfg.models]
    return [
        bar_chart({LABELS[m]: [per_user[d][m]["test"]["auc"] for d in cfg.durations] for m in cfg.models},
                  [f"{d:g} s" for d in cfg.durations], p.plot("embeddings_auc"),
                  "liked vs disliked ROC-AUC (test pairs)", "AUC"),
        line_chart({**{k: [r[f"hit_rate@{x}"] for x in cfg.hit_k] for k, r in hr_rows.items() if "unseen" not in k},
                    "random ranking": [per_user[cfg.best_duration][cfg.best_model]["hit_rate"][f"random_hit_rate@{x}"]
                                       for x in cfg.hit_k]},
                   list(cfg.hit_k), p.plot("embeddings_hit_rate"), "new tracks: hit rate @K", "K", "hit rate"),
        roc_pr_curves(np.repeat(test_pairs.liked[:, None], len(cols), axis=1),
                      np.stack([per_user[cfg.best_duration][m]["_scores"]["test"] for m in cfg.models], axis=1),
                      cols, p.plot("embeddings_roc_pr"), "liked vs disliked, test pairs"),
    ]


def _intervals(exp: Experiment, params: Params) -> None:
    """Table 1's test figures get their bootstrap intervals over users, and each model its paired
    difference from Basic-Binary (the same resamples, the same test pairs), into its "test" entry."""
    ev = params.evaluate
    if ev.bootstrap <= 0:
        return
    test = exp.protocols["per_user"].pairs["test"]
    for models in exp.results["per_user"].values():
        boot = bootstrap_liked(test.liked, test.user, {m: r["_scores"]["test"] for m, r in models.items()},
                               {m: r["test"]["threshold"] for m, r in models.items()}, ev.bootstrap, params.seed,
                               ev.level, pairs=[(m, BASELINE) for m in models if m != BASELINE])
        for m, r in models.items():
            r["test"]["intervals"] = boot["intervals"][m]
            r["test"]["vs"] = boot["paired"].get(f"{m} - {BASELINE}")


def _log_mlflow(params: Params, runs: list[dict], artifacts: list[Path]) -> None:
    """One run per (protocol, model, duration); MLflow down: a warning, the outputs are written already."""
    import dataclasses

    from ctxtag.common.tracking import Tracker

    cfg = params.embeddings
    tracker = Tracker(cfg.experiment)
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("models", "durations", "split")}
    for r in runs:
        tracker.call(_log_run, r, base, artifacts)


def _log_run(r: dict, base: dict, artifacts: list[Path]) -> None:
    import mlflow

    from ctxtag.common.tracking import log_metrics, log_params

    with mlflow.start_run(run_name=f"{r['protocol']}-{r['model']}-{r['duration']:g}s"):
        mlflow.set_tags({"protocol": r["protocol"], "model": r["model"], "context_duration_s": r["duration"]})
        log_params(base, "embeddings")
        log_metrics({k: r["result"][k] for k in ("test", "cold")})
        log_metrics(r["result"]["hit_rate"], "new_tracks")
        for row in r["history"]:
            log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        for path in artifacts:
            mlflow.log_artifact(str(path))


def run(params: Params) -> dict:
    p, cfg = params.paths, params.embeddings
    device = pick_device(cfg.device)
    events = read_lake(p.lake)
    catalogue = pd.read_csv(p.tracks, dtype=str)
    tagger_split = read_split(p.split_csv)
    mels = mel_set.read(p.embedding_features, mmap=False)   # random crops read it all, every epoch
    start = time.time()

    def echo(tag: str, row: dict) -> None:
        print(f"[{tag}] epoch {row['epoch']:3d}  train {row['train_loss']:.4f}  val AUC {row['val_auc']:.4f}"
              f"  ({time.time() - start:.0f} s)", flush=True)

    def save(model, name: str, duration: float, history: list[dict]) -> None:
        save_audio_branch(model.cnn, name, duration, history, cfg, params.embedding_audio, p.embeddings)

    try:
        exp = run_experiment(events, catalogue, tagger_split, mels, params, device, echo, save)
    except ValueError as exc:
        raise ValueError(f"{p.lake}: {exc}") from exc
    tracks, users, ae_all = serving_tables(exp, events, mels, params, device)
    for frame, path in ((tracks, p.track_embeddings_parquet), (users, p.user_embeddings_parquet)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    serving = exp.protocols["per_user"]
    save_user_branch(serving.user_branch, serving.vocab, serving.user_history, cfg, p.user_branch_pt)
    # what the registry's gate scores every version on (ctxtag.platform.gate_scores): the cold-start
    # use case, the liked / disliked pairs of tracks no model saw listening data of
    cold = serving.pairs["cold"]
    gate = pd.DataFrame({"user_id": serving.users[cold.user].astype(str), "track_id": np.asarray(mels.track_ids)[cold.row],
                         "liked": cold.liked.astype(np.int8)})
    with atomic_path(p.gate_pairs_parquet) as tmp:
        gate.to_parquet(tmp, index=False)

    ids, y = read_matrix(p.labels_csv, params.contexts)
    track_features = pd.read_parquet(p.track_features_parquet, columns=["track_id", "audio_embedding"])
    transfer_res = transfer_study(ids, y, track_features, ae_all, mels, tagger_split, params)

    _intervals(exp, params)
    chance = chance_results(exp.protocols["per_user"].pairs, params.seed, params.evaluate.bootstrap,
                            params.evaluate.level)
    write_text(report.markdown(exp, transfer_res, cfg, chance), p.reports / "embeddings.md")
    plots = _plots(exp, params)
    for proto in exp.results.values():
        for models in proto.values():
            for r in models.values():
                r.pop("_scores", None)
    summary = report.summary(exp, transfer_res, cfg, chance)
    write_report(summary, p, "embeddings", HEADLINE)
    write_json(transfer_res, p.transfer_json)
    if cfg.log_mlflow:
        _log_mlflow(params, exp.runs, [p.reports / "embeddings.md", *plots])
    return summary
