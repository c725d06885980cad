"""`ctxtag train` around MLflow faults: tracking unreachable or gone mid-run never stops the training
or its outputs; a run killed between its checkpoint and its MLflow logging loses no epoch."""

from __future__ import annotations

import json
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from ctxtag.cli import main
from ctxtag.config import load_params
from ctxtag.stages import train as stage
from ctxtag.vocabulary import CONTEXTS, SPLITS
from tests.conftest import MlflowServer, closed_port

N_TRACKS = 40


@pytest.fixture
def project(tmp_path, mlflow_env):
    """The train stage's inputs for 40 tiny (16 x 17) mels, in a folder of their own (the cwd, so
    the default MLflow store is its ./mlruns.db); params: 2 epochs of the unweighted loss on the CPU."""
    rng = np.random.default_rng(0)
    ids = [f"t{i:03d}" for i in range(N_TRACKS)]
    y = (rng.random((N_TRACKS, len(CONTEXTS))) < 0.3).astype(int)
    mels = rng.normal(0, 0.3, (N_TRACKS, 16, 17)).astype(np.float16) + y[:, :1, None].astype(np.float16)
    (tmp_path / "data/features").mkdir(parents=True)
    np.save(tmp_path / "data/features/mels.npy", mels)
    pd.DataFrame({"track_id": ids, "row": range(N_TRACKS)}).to_csv(tmp_path / "data/features/index.csv", index=False)
    (tmp_path / "data/labelled").mkdir(parents=True)
    pd.DataFrame(y, columns=list(CONTEXTS)).assign(track_id=ids)[["track_id", *CONTEXTS]].to_csv(
        tmp_path / "data/labelled/labels.csv", index=False)
    (tmp_path / "data/weights").mkdir(parents=True)
    np.savez(tmp_path / "data/weights/weights.npz", contexts=np.array(CONTEXTS), track_id=np.array(ids))
    (tmp_path / "data/splits").mkdir(parents=True)
    split = [SPLITS[0]] * 28 + [SPLITS[1]] * 8 + [SPLITS[2]] * 4
    pd.DataFrame({"track_id": ids, "split": split}).to_csv(tmp_path / "data/splits/split.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "audio": {"n_mels": 16, "duration_s": 0.75},            # 17 frames
        "train": {"loss": "none", "max_epochs": 2, "batch_size": 8, "device": "cpu", "experiment": "ctxtag-test"}}))
    mlflow_env.chdir(tmp_path)
    return tmp_path


def _params(project, **train):
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["train"].update(train)
    (project / "params.yaml").write_text(yaml.safe_dump(data))
    return load_params(project / "params.yaml")


def _outputs_written(project, epochs: int) -> None:
    import torch

    model_dir = project / "data/models/none"
    assert torch.load(model_dir / "last.pt", weights_only=True)["epoch"] == epochs
    assert (model_dir / "best.pt").exists()
    assert json.loads((project / "reports/train/none.json").read_text())["epochs_run"] == epochs
    assert (project / "reports/plots/train_loss_none.png").exists()


def _epochs_logged(run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient()
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in ("train_loss", "val_loss")}


def test_train_with_mlflow_unreachable_warns_once_and_writes_its_outputs(project, mlflow_env, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    assert main(["train"]) == 0
    assert time.monotonic() - started < 90                   # not MLflow's default minutes of retries
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and uri in warnings[0] and "Connection refused" in warnings[0]
    _outputs_written(project, 2)
    assert not (project / "data/models/none/mlflow_run.json").exists()


class Killed(BaseException):
    """The process dies (kill -9, power cut) at the injected point."""


def test_killed_between_checkpoint_and_logging_loses_no_epoch_in_mlflow(project, monkeypatch):
    params = _params(project)
    real = stage.log_missing_epochs

    def killed_before_logging_epoch_2(history):
        if [row["epoch"] for row in history] == [2]:         # last.pt holds epoch 2 already
            raise Killed
        return real(history)

    monkeypatch.setattr(stage, "log_missing_epochs", killed_before_logging_epoch_2)
    with pytest.raises(Killed):
        stage.run(params)
    monkeypatch.setattr(stage, "log_missing_epochs", real)
    run_id = json.loads((project / "data/models/none/mlflow_run.json").read_text())["run_id"]
    assert _epochs_logged(run_id) == {"train_loss": [1], "val_loss": [1]}     # epoch 2: checkpointed, not logged

    summary = stage.run(_params(project, max_epochs=3))
    assert summary["resumed_from_epoch"] == 2 and summary["epochs_run"] == 3
    assert json.loads((project / "data/models/none/mlflow_run.json").read_text())["run_id"] == run_id
    assert _epochs_logged(run_id) == {"train_loss": [1, 2, 3], "val_loss": [1, 2, 3]}   # each exactly once
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["fingerprint"]
    assert mlflow.MlflowClient().list_artifacts(run_id, "checkpoint")     # the run's best.pt


@pytest.mark.slow
def test_mlflow_server_gone_mid_run_training_goes_on_and_a_rerun_fills_the_run_in(project, mlflow_env, capsys):
    params = _params(project, max_epochs=3)
    real = stage.log_missing_epochs
    server = MlflowServer(project / "mlflow-server")
    try:
        mlflow_env.setenv("MLFLOW_TRACKING_URI", server.uri)

        def server_dies_before_epoch_2_is_logged(history):
            if [row["epoch"] for row in history] == [2]:
                server.kill()
            return real(history)

        mlflow_env.setattr(stage, "log_missing_epochs", server_dies_before_epoch_2_is_logged)
        started = time.monotonic()
        summary = stage.run(params)                          # no exception: the training went on
        assert time.monotonic() - started < 120
    finally:
        server.kill()
    mlflow_env.setattr(stage, "log_missing_epochs", real)
    assert summary["epochs_run"] == 3
    _outputs_written(project, 3)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and server.uri in warnings[0] and "Connection refused" in warnings[0]
    run_id = json.loads((project / "data/models/none/mlflow_run.json").read_text())["run_id"]

    again = MlflowServer(project / "mlflow-server", port=server.port)        # back, with its store
    try:
        assert _epochs_logged(run_id) == {"train_loss": [1], "val_loss": [1]}    # what the first run got in
        summary = stage.run(params)                          # nothing to train: fills the run in
        assert summary["resumed_from_epoch"] == 3 and summary["epochs_run"] == 3
        assert _epochs_logged(run_id) == {"train_loss": [1, 2, 3], "val_loss": [1, 2, 3]}
        assert mlflow.MlflowClient().list_artifacts(run_id, "checkpoint")     # the run's best.pt
        assert mlflow.MlflowClient().get_run(run_id).info.status == "FINISHED"
    finally:
        again.kill()
