"""`ctxtag embeddings` logs one MLflow run per (protocol, model, duration); with MLflow unreachable it
warns once and goes on (its tables and reports are written before it logs)."""

from __future__ import annotations

import mlflow

from ctxtag.config import Params
from ctxtag.stages.embeddings import _log_mlflow
from tests.conftest import closed_port

RUNS = [{"protocol": "per_user", "model": m, "duration": 2.0,
         "result": {"test": {"auc": 0.7}, "cold": {"auc": 0.6}, "hit_rate": {"hit_rate@10": 0.3}},
         "history": [{"epoch": 1, "train_loss": 0.9, "val_auc": 0.6}, {"epoch": 2, "train_loss": 0.8, "val_auc": 0.65}]}
        for m in ("ae", "ue")]


def test_each_run_is_logged(tmp_path, mlflow_env):
    mlflow_env.chdir(tmp_path)                       # the default store: ./mlruns.db
    (tmp_path / "embeddings.md").write_text("# report\n")
    _log_mlflow(Params(), RUNS, [tmp_path / "embeddings.md"])
    runs = mlflow.search_runs(experiment_names=[Params().embeddings.experiment], output_format="list")
    assert sorted(r.data.tags["model"] for r in runs) == ["ae", "ue"]
    assert all(r.data.metrics["test.auc"] == 0.7 and r.info.status == "FINISHED" for r in runs)
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "val_auc")
    assert sorted(m.step for m in history) == [1, 2]


def test_mlflow_unreachable_is_one_warning(tmp_path, mlflow_env, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _log_mlflow(Params(), RUNS, [])                  # does not raise
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: MLflow tracking at {uri} failed") and "Connection refused" in err[0]
