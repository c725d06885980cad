"""The Airflow DAGs: parsed for real (DagBag), kept light at the top level, and run end to end with
`airflow dags test` on a throwaway AIRFLOW_HOME + SQLite, on a copy of the small generated world."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, tool_env

DAGS = ROOT / "dags"
HEAVY = ("torch", "feast", "mlflow", "great_expectations", "pandas", "sklearn", "ctxtag")


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_files_import_only_airflow_and_the_standard_library(dag_file):
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS / dag_file)], capture_output=True, text=True,
                         env={**tool_env(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_dagbag_loads_the_dags_with_schedules_queues_and_assets():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dags) == {"ctxtag_ingest", "ctxtag_retrain"}
    retrain, ingest = bag.dags["ctxtag_retrain"], bag.dags["ctxtag_ingest"]
    assert isinstance(retrain.timetable, AssetOrTimeSchedule)            # weekly, or when features land
    assert retrain.timetable.timetable.expression == "0 3 * * 1"
    # the day that ended: logical date D is the interval [D 01:00, D+1 01:00)
    assert type(ingest.timetable).__name__ == "CronDataIntervalTimetable" and ingest.timetable.expression == "0 1 * * *"
    # paused at creation: the deployment's choice (the stack: no; a developer's `make airflow`: yes)
    assert ingest.is_paused_upon_creation is None and retrain.is_paused_upon_creation is None
    gpu = {t.task_id for t in retrain.tasks if t.queue == "gpu" and t.pool == "gpu"}
    assert gpu == {"train", "tag_partition", "embeddings", "user_models"}
    for mapped, over in (("train", "loss_configs"), ("tag_partition", "plan_track_features")):   # fanned out
        assert type(retrain.get_task(mapped)).__name__.endswith("MappedOperator")
        assert over in retrain.get_task(mapped).upstream_task_ids
    outlets = {t.task_id: [o.name for o in t.outlets] for t in ingest.tasks}
    # the asset event only where the snapshots changed: a task after publish_features, skipped if it did not run
    assert outlets["features_updated"] == ["ctxtag_features"] and outlets["publish_features"] == []
    assert ingest.get_task("features_updated").upstream_task_ids == {"publish_features"}
    assert retrain.start_date is None            # a new deployment's first scheduled retrain: the next Monday
    assert "synth" not in {t.task_id for d in (ingest, retrain) for t in d.tasks}      # never in production
    # every task but the data gate retries with backoff (a service down); the gate fails at once
    retries = {t.task_id: (t.retries, bool(t.retry_exponential_backoff)) for d in (ingest, retrain) for t in d.tasks}
    assert retries.pop("validate") == (0, True)
    assert set(retries.values()) == {(3, True)}
    assert {t.execution_timeout.total_seconds() for d in (ingest, retrain) for t in d.tasks} == {6 * 3600}   # bounded


def _dvc_ancestors() -> dict[str, set[str]]:
    """Every stage's upstream stages, transitively, from dvc.yaml (train@x -> train)."""
    import networkx as nx
    from dvc.repo import Repo

    graph = Repo(str(ROOT)).index.graph          # edges: stage -> a stage it depends on
    name = lambda st: st.addressing.split("@")[0]   # noqa: E731
    return {name(st): {name(up) for up in nx.descendants(graph, st)} for st in graph.nodes}


@pytest.mark.parametrize("dag_id", ["ctxtag_ingest", "ctxtag_retrain"])
def test_the_dag_runs_each_stage_after_the_stages_dvc_yaml_puts_before_it(dag_id):
    """One task per DVC stage (--single-item), and no task before its inputs: among the stages a
    DAG runs, A is upstream of B in the DAG exactly when dvc.yaml makes B depend on A."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags[dag_id]
    dvc_up = _dvc_ancestors()
    stages = {t.task_id for t in dag.tasks} & set(dvc_up)
    assert stages >= ({"ingest_logs", "validate", "publish_features"} if dag_id == "ctxtag_ingest" else
                      set(dvc_up) - {"synth"})
    for t in stages:
        in_dag = {u.task_id for u in dag.get_task(t).get_flat_relatives(upstream=True)} & stages
        assert in_dag == dvc_up[t] & stages, t


def test_with_the_spark_data_plane_the_ingest_dag_submits_the_stages_to_spark():
    """CTXTAG_DATA_PLANE=spark: ingest and publish are spark-submit jobs of the same stages."""
    code = ("import sys, json; "
            "from airflow.dag_processing.dagbag import DagBag; bag = DagBag(dag_folder=sys.argv[1]); "
            "dag = bag.dags['ctxtag_ingest']; "
            "print(json.dumps({t.task_id: [type(t).__name__, getattr(t, 'application', None), "
            "getattr(t, 'application_args', None), [o.name for o in t.outlets], "
            "sorted(u.task_id for u in t.upstream_list)] for t in dag.tasks}))")
    out = subprocess.run([sys.executable, "-c", code, str(DAGS / "ctxtag_ingest.py")], capture_output=True, text=True,
                         env={**tool_env(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "CTXTAG_DATA_PLANE": "spark",
                              "CTXTAG_PROJECT": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    tasks = json.loads(out.stdout.strip().splitlines()[-1])
    app = str(ROOT / "ctxtag/listening/spark_main.py")
    assert tasks["ingest_logs"][:3] == ["SparkSubmitOperator", app, ["ingest-logs", "--project", str(ROOT)]]
    assert tasks["publish_features"][:4] == ["SparkSubmitOperator", app, ["publish-features", "--project", str(ROOT)],
                                             ["ctxtag_features"]]
    assert tasks["ingest_logs"][4] == ["fetch_drops"] and tasks["trained"][4] == ["ingest_logs"]
    assert tasks["publish_features"][4] == ["validate"] and Path(app).exists()


def _airflow(home: Path, project: Path, *args: str) -> str:
    env = {**tool_env(), "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "CTXTAG_PROJECT": str(project),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True,
                          text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _lake(project: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in sorted((project / "data/lake/listening_logs").rglob("*.parquet")))


@pytest.mark.slow
def test_dags_run_end_to_end_and_reruns_are_idempotent(dvc_project, tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(dvc_project, project, symlinks=True)                 # the session's project stays as is
    home = tmp_path / "airflow"
    home.mkdir()
    _airflow(home, project, "db", "migrate")

    # a drop for 2026-01-10 in a date-partitioned source: 20 new events (a later second of real ones)
    first = sorted((project / "data/raw/listening_logs").glob("*.csv"))[0]
    new = pd.read_csv(first, dtype=str).head(20)
    new["timestamp"] = new["timestamp"].map(lambda s: (pd.Timestamp(s) + pd.Timedelta(seconds=7)).isoformat())
    source = tmp_path / "source"
    (source / "date=2026-01-10").mkdir(parents=True)
    new.to_csv(source / "date=2026-01-10/drop.csv", index=False)
    before = len(_lake(project))

    conf = json.dumps({"source": str(source)})
    out = _airflow(home, project, "dags", "test", "ctxtag_ingest", "2026-01-10", "-c", conf)
    assert "state=success" in out and "state=failed" not in out
    after = _lake(project)
    assert len(after) == before + 20
    snapshots = pd.read_parquet(project / "data/feast/user_history.parquet")

    out = _airflow(home, project, "dags", "test", "ctxtag_ingest", "2026-01-10", "-c", conf)   # the same date again
    assert "state=success" in out
    assert len(_lake(project)) == len(after)                              # nothing ingested twice
    again = pd.read_parquet(project / "data/feast/user_history.parquet")
    assert len(again) == len(snapshots) and not again.duplicated(["user_id", "event_timestamp"]).any()

    out = _airflow(home, project, "dags", "test", "ctxtag_retrain", "2026-01-12")
    assert "state=success" in out and "state=failed" not in out
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    name = "ctxtag-audio-tagger"
    champion = client.get_model_version_by_alias(name, "champion")
    events = [json.loads(v) for k, v in sorted(client.get_registered_model(name).tags.items()) if k.startswith("audit.")]
    assert [e["action"] for e in events] == ["register", "promote"]
    assert all(e["who"].startswith("airflow:ctxtag_retrain/") for e in events)

    context = client.get_model_version_by_alias("ctxtag-context-model", "champion")   # gated too
    from ctxtag.config import load_params
    from ctxtag.platform.publication import served

    stamp = served(load_params(project / "params.yaml"), project)          # republished after the gate
    assert stamp["model"] == f"ctxtag-context-model/{context.version}"
    _airflow(home, project, "dags", "test", "ctxtag_retrain", "2026-01-12")    # rerun: no new version
    assert len(client.search_model_versions(f"name='{name}'")) == 1
    assert len(client.search_model_versions("name='ctxtag-context-model'")) == 1 and context.version
    assert client.get_model_version_by_alias(name, "champion").version == champion.version
    assert "Data and pipelines are up to date" in subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "status"], cwd=project, capture_output=True, text=True,
        env={**os.environ}).stdout
