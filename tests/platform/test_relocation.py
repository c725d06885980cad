"""A project can be copied or moved: mlruns.db, the logged MLmodel files, the Feast registry and
reports/quality.json hold paths relative to the project (Feast: to its repo path), so a copy reads
and writes its own artifacts and features, never those of the project it was copied from."""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import shutil
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT


def _files_naming(root: Path, *paths: Path) -> dict[str, list[str]]:
    """Files under ``root`` (links not followed: ``ctxtag/`` links to the code) whose bytes hold
    any of ``paths``; sqlite databases are read as bytes too."""
    needles = {str(p): str(p).encode() for p in paths}
    hits: dict[str, list[str]] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            f = Path(folder) / name
            if f.is_symlink():
                continue
            data = f.read_bytes()
            if found := [n for n, b in needles.items() if b in data]:
                hits[str(f.relative_to(root))] = found
    return hits


@pytest.mark.slow
def test_a_copied_project_uses_its_own_artifacts_features_and_reports(dvc_project, context_champion, tmp_path):
    import mlflow

    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.config import load_params
    from ctxtag.platform.feature_store import historical, open_store
    from ctxtag.platform.orchestration import in_project
    from ctxtag.platform.promotion import promote
    from ctxtag.platform.registry import register
    from ctxtag.serving.service import Service

    original, copy = tmp_path / "original", tmp_path / "copy"
    shutil.copytree(dvc_project, original, symlinks=True)      # the session's project stays as is
    params = load_params(original / "params.yaml")
    params = dataclasses.replace(params, registry=dataclasses.replace(
        params.registry, model_name=f"reloc-test-{uuid.uuid4().hex[:6]}", context_model_name=context_champion))
    name = params.registry.model_name
    with in_project(original):                                 # the original registers its champion
        register(params)
        promote(params, why="relocation test")
    shutil.copytree(original, copy, symlinks=True)
    shutil.rmtree(original)                                    # moved: the original is gone

    with in_project(copy):
        setup_mlflow(params.train.experiment)
        client = mlflow.MlflowClient()
        version = client.get_model_version_by_alias(name, "champion")
        location = client.get_model_version_download_uri(name, version.version)
        assert location.startswith("mlartifacts/models/")          # relative to the project root
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion")).resolve()
        assert local.is_relative_to(copy.resolve()) and (local / "MLmodel").exists()
        assert "artifact_path: mlartifacts/" in (local / "MLmodel").read_text()
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")          # code, not a pickle
        example = mlflow.models.Model.load(str(local)).load_input_example(str(local))
        assert list(model.predict(example).columns) == list(params.contexts)
        run = client.get_run(version.run_id)
        assert not Path(run.info.artifact_uri).is_absolute()
        assert "complete true labels" in mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/table2.md")
        with mlflow.start_run(run_name="relocation-test") as new:       # writes go to the copy's store
            mlflow.log_text("moved", "note.txt")
        assert (copy / new.info.artifact_uri / "note.txt").read_text() == "moved"

        store = open_store(Path(params.paths.feast))
        assert all(not Path(v.batch_source.path).is_absolute() for v in store.list_feature_views())
        users = pd.read_parquet(params.paths.feast / "user_history.parquet")
        last = users.sort_values("event_timestamp").groupby("user_id").tail(1).head(5)
        keys = pd.DataFrame({"user_id": last["user_id"].to_numpy(),
                             "event_timestamp": last["event_timestamp"] + pd.Timedelta(seconds=1)})
        offline = historical(store, keys, ["user_listening_history:n_streams"])
        assert offline["n_streams"].tolist() == last["n_streams"].tolist()
        online = open_store(Path(params.paths.online)).get_online_features(features=["user_listening_history:n_streams"],
                                           entity_rows=[{"user_id": u} for u in last["user_id"]]).to_dict()
        assert online["n_streams"] == last["n_streams"].tolist()

        quality = json.loads(params.paths.report("quality").read_text())
        assert all(not Path(g["data_docs"]).is_absolute() and Path(g["data_docs"]).exists()
                   for g in quality.values())

    # served from elsewhere (the copy's root), and only from the registry: without the pipeline's
    # model files the API still loads every model (the @champions' own artifacts)
    shutil.rmtree(copy / params.paths.user_models)
    shutil.rmtree(copy / params.paths.models)
    service = Service(params, copy)
    assert service.tagger_version == f"{name}/1" and Path.cwd() != copy
    assert service.model_versions["situational"] == f"{context_champion}/1"

    leaks = _files_naming(copy, original.resolve(), dvc_project.resolve())
    assert leaks == {}, leaks
    with sqlite3.connect(copy / "mlruns.db") as con:            # the store names no absolute location
        locations = [row[0] for row in con.execute("SELECT artifact_location FROM experiments UNION ALL "
                                                   "SELECT artifact_uri FROM runs")]
    assert locations and not any(Path(loc).is_absolute() or "://" in loc for loc in locations)


def test_an_old_store_is_made_relative_when_opened(tmp_path, monkeypatch):
    """A mlruns.db written before the rule (absolute locations under the project) is rewritten on
    open; a location elsewhere (another store's) is left alone."""
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    setup_mlflow("reloc-old")
    exp = mlflow.get_experiment_by_name("reloc-old")
    assert exp.artifact_location == "mlartifacts"
    mlflow.create_experiment("elsewhere", artifact_location="file:///srv/mlartifacts")
    with sqlite3.connect(tmp_path / "mlruns.db") as con:          # as a store before the rule held it
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    ((tmp_path / "mlartifacts").resolve().as_uri(), exp.experiment_id))
    setup_mlflow("reloc-old")
    assert mlflow.get_experiment_by_name("reloc-old").artifact_location == "mlartifacts"
    assert mlflow.get_experiment_by_name("elsewhere").artifact_location == "file:///srv/mlartifacts"
    with mlflow.start_run() as run:
        mlflow.log_text("x", "x.txt")
    assert run.info.artifact_uri == f"mlartifacts/{run.info.run_id}/artifacts"
    assert (tmp_path / run.info.artifact_uri / "x.txt").exists()
    assert str(tmp_path.resolve()).encode() not in (tmp_path / "mlruns.db").read_bytes()


def test_a_second_project_in_the_same_process_gets_its_own_store(tmp_path, monkeypatch):
    """MLflow copies set_tracking_uri into MLFLOW_TRACKING_URI; that is no server setting, so the
    next project opened in the process (a copy, the Airflow task's) gets its own mlruns.db."""
    from ctxtag.common.tracking import setup_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    setup_mlflow("reloc-two", first)
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{(first / 'mlruns.db').resolve()}"
    assert setup_mlflow("reloc-two", second) == f"sqlite:///{(second / 'mlruns.db').resolve()}"
    assert (second / "mlruns.db").exists()


def test_feature_repo_names_the_pipelines_registry_relatively(monkeypatch):
    """feature_repo/ (the feast CLI's repository) reads the registry and online store the pipeline
    writes (one registry), named relative to it, and defines the sources as the pipeline does."""
    import yaml

    from ctxtag.config import load_params
    from ctxtag.platform.feature_store import registry_file

    feast_dir = (ROOT / load_params(ROOT / "params.yaml").paths.online).resolve()
    for online, name in (("sqlite", "feature_store.yaml"), ("redis", "feature_store.redis.yaml")):
        cfg = yaml.safe_load((ROOT / "feature_repo" / name).read_text())
        assert not Path(cfg["registry"]).is_absolute()
        assert (ROOT / "feature_repo" / cfg["registry"]).resolve() == registry_file(feast_dir, online)
    monkeypatch.setenv("CTXTAG_PARAMS", str(ROOT / "params.yaml"))
    names = runpy.run_path(str(ROOT / "feature_repo/definitions.py"))
    assert names["user_listening_history"].batch_source.path == "../feast/user_history.parquet"


def test_feast_cli_names_another_data_folder_and_refuses_writes(tmp_path):
    """feast_cli.py: another params file's paths.online, absolute; apply/materialize refused."""
    import yaml

    names = runpy.run_path(str(ROOT / "feature_repo/feast_cli.py"))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"paths": {"online": str(tmp_path / "elsewhere")}}))
    cfg = names["config"](tmp_path / "p.yaml", "sqlite")
    assert cfg["registry"] == str(tmp_path / "elsewhere/registry-sqlite.db")
    assert cfg["online_store"]["path"] == str(tmp_path / "elsewhere/online.db")
    assert names["config"](tmp_path / "p.yaml", "redis")["registry"] == str(tmp_path / "elsewhere/registry-redis.db")
    # the production stack's store: the shared SQL registry and its Redis, as `ctxtag publish` had them
    shared = names["config"](tmp_path / "p.yaml", "redis", "10.0.0.5:6380", "postgresql+psycopg2://f@db:5432/feast")
    assert shared["registry"]["registry_type"] == "sql" and shared["registry"]["path"].endswith("@db:5432/feast")
    assert shared["online_store"]["connection_string"] == "10.0.0.5:6380"
    for args in (["apply"], ["materialize-incremental", "2026-01-01T00:00:00"], ["teardown"]):
        with pytest.raises(SystemExit, match="ctxtag publish"):
            names["command"](args, tmp_path / "f.yaml")
    assert names["command"](["serve"], tmp_path / "f.yaml")[-1] == "serve"
