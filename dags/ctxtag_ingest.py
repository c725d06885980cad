"""ctxtag_ingest — daily, for the UTC day that just ended: fetch that day's listening-log drops (a
local folder or S3, laid out as date=YYYY-MM-DD/), ingest them into the append-only lake, run the
Great Expectations gates, compute the daily user snapshots (offline store), serve them beside the
champions' features, and push the outputs to the DVC remote. Updates the `ctxtag_features` asset,
which triggers ctxtag_retrain, where the snapshots changed (a rerun of the same day starts none).

Each DVC step is its own task running that stage alone (`dvc repro --single-item`): the demo world
(`synth`) is never part of a run, and a stage whose inputs did not change is skipped by DVC.
Reruns of a date are no-ops: copied files are skipped, known events are not re-ingested, the
snapshots are rebuilt from the lake (no duplicate rows).

Which day: the run's `date` param, else its logical date (the schedule's interval start: the day
before the run), else, for a manual run without a logical date, the day before it was triggered.
Where from: the `source` param, else $CTXTAG_DROPS_SOURCE; neither: only the drops already in the
project are (re)ingested.

Paused or not at creation is the deployment's choice, Airflow's [core] dags_are_paused_at_creation:
the production stack starts it unpaused (a new deployment ingests from its first day, and a run
with nothing new changes nothing); `make airflow` keeps Airflow's default, paused, so a
developer's checkout runs nothing until they unpause it.

The listening-data plane runs embedded (DuckDB, inside the task) unless CTXTAG_DATA_PLANE=spark:
then ingest_logs and publish_features are spark-submit jobs (the Spark provider's
SparkSubmitOperator, connection `spark_default` naming the cluster's master) running the same
stage functions (ctxtag/listening/spark_main.py) on the cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

if str(Path(__file__).parent) not in sys.path:        # ctxtag_common.py lies beside this file
    sys.path.insert(0, str(Path(__file__).parent))
from ctxtag_common import FEATURES, RETRIES, project_dir, push, stage

DATA_PLANE = os.environ.get("CTXTAG_DATA_PLANE", "embedded")     # embedded | spark


@dag(
    dag_id="ctxtag_ingest",
    # the interval [D 01:00, D+1 01:00): its run starts at D+1 01:00 with logical date D, an hour
    # after the day ended, so late drops of day D have landed
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=None,      # the deployment's choice (module docstring)
    default_args=RETRIES,
    tags=["ctxtag", "data"],
    params={"source": Param(None, type=["null", "string"],
                            description="folder or s3://bucket/prefix holding date=YYYY-MM-DD/ log drops; "
                                        "empty: $CTXTAG_DROPS_SOURCE, else only the drops already in the project"),
            "date": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                          description="the day to fetch (YYYY-MM-DD); empty: the run's logical date, "
                                      "else the day before it was triggered")},
    doc_md=__doc__,
)
def ctxtag_ingest():
    @task
    def fetch_drops(params=None, dag_run=None) -> dict:
        """Copy the day's drops into data/incoming (files already there are skipped)."""
        from airflow.exceptions import AirflowSkipException

        from ctxtag.platform.orchestration import fetch, in_project, run_date, worker_name

        date = run_date(dag_run.logical_date, dag_run.run_after, params.get("date"))
        source = params.get("source") or os.environ.get("CTXTAG_DROPS_SOURCE")
        copied = []
        if source:
            with in_project(project_dir()) as p:
                try:
                    copied = fetch(source, p.paths.incoming_logs, date)
                except FileNotFoundError as exc:        # a day without drops: nothing new, the run says so
                    raise AirflowSkipException(f"{exc}: nothing to ingest") from exc
        return {"date": date, "source": source, "copied": [f.name for f in copied], "worker": worker_name()}

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def trained() -> bool:
        """The gates and the snapshots need the tagger's track features and the listening
        embeddings: in a new deployment, before the first ctxtag_retrain has made them, the run
        ends after ingest (the lake still goes to the remote)."""
        from ctxtag.platform.orchestration import in_project

        with in_project(project_dir()) as params:
            p = params.paths
            missing = [str(f) for f in (p.track_features_parquet, p.track_embeddings_parquet, p.user_embeddings_parquet)
                       if not f.exists()]
        if missing:
            print(f"not trained yet (missing {missing}): ctxtag_retrain makes them; the gates and snapshots wait")
        return not missing

    @task
    def serve_features() -> dict:
        """Today's user snapshots into the served store, beside the champions' track features
        (`ctxtag publish`); skipped while no context model is champion (nothing is served yet)."""
        from airflow.exceptions import AirflowSkipException

        from ctxtag.platform.orchestration import in_project, online_store
        from ctxtag.platform.publication import publish
        from ctxtag.platform.registry import NoChampion

        with in_project(project_dir()) as params:
            try:
                return publish(params, **online_store())
            except NoChampion as exc:                # nothing served yet
                raise AirflowSkipException(str(exc)) from exc

    @task(outlets=[FEATURES])
    def features_updated(published: dict) -> dict:
        """The ctxtag_features asset event, which starts ctxtag_retrain, only where publish_features
        ran: a rerun whose snapshots DVC found up to date (the same day again) retrains nothing and
        starts no run (a skipped task emits no event)."""
        from airflow.exceptions import AirflowSkipException

        if not published.get("ran"):
            raise AirflowSkipException("publish_features was up to date: the features did not change")
        return published

    fetched = fetch_drops()
    if DATA_PLANE == "spark":
        # the provider is imported only here: parsing the embedded DAG stays airflow + stdlib
        from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

        def submit(name: str, **kw) -> SparkSubmitOperator:
            return SparkSubmitOperator(
                task_id=name.replace("-", "_"), conn_id="spark_default", name=f"ctxtag-{name}",
                application=str(project_dir() / "ctxtag/listening/spark_main.py"),
                application_args=[name, "--project", str(project_dir())],
                conf={"spark.sql.session.timeZone": "UTC"}, **kw)

        ingested, published = submit("ingest-logs"), submit("publish-features", outlets=[FEATURES])
    else:
        # forced: the new drops are not a DVC dependency (the fetch adds them); ingest skips what
        # the lake holds, so a forced rerun writes nothing twice
        ingested = stage("ingest_logs", force=True)
        # --single-item: a daily ingest never retrains the embeddings (ctxtag_retrain does)
        published = stage("publish_features")
        features_updated(published)
    validated = stage("validate", retries=0)          # a data gate that fails fails again: say so at once
    fetched >> ingested >> trained() >> validated >> published >> serve_features()
    # the outputs go to the remote after the snapshots, or after ingest alone where they wait
    [ingested, published] >> push.override(trigger_rule="none_failed_min_one_success")()


ctxtag_ingest()
