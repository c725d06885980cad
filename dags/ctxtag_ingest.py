"""ctxtag_ingest — daily: fetch the day's listening-log drops (a local folder or S3, laid out as
date=YYYY-MM-DD/), ingest them into the append-only lake, run the Great Expectations gates, publish
the user and track features to Feast (apply + materialize). Updates the `ctxtag_features` asset, which triggers ctxtag_retrain.

Top level: airflow and the standard library only (parsing stays fast); the work is in ctxtag.
Reruns of a logical date are no-ops: copied files are skipped, known events are not re-ingested,
the Feast snapshots are rebuilt from the lake (no duplicate rows).

The listening-data plane runs embedded (DuckDB, inside the task) unless CTXTAG_DATA_PLANE=spark:
then ingest_logs and publish_features are spark-submit jobs (the Spark provider's
SparkSubmitOperator, connection `spark_default` naming the cluster's master) running the same
stage functions (ctxtag/listening/spark_main.py) on the cluster.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, Param, dag, task

FEATURES = Asset(name="ctxtag_features", uri="file:///ctxtag/feast/features")
# a service that is down (broker, metadata DB, MLflow, S3) is retried with backoff: 30 s, 1, 2 min;
# every task is idempotent (dvc repro, deduplicating ingest, resumable training), so a retry is safe
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True,
           "max_retry_delay": timedelta(minutes=10)}


DATA_PLANE = os.environ.get("CTXTAG_DATA_PLANE", "embedded")     # embedded | spark


def project_dir() -> Path:
    """The ctxtag checkout the tasks work in: $CTXTAG_PROJECT, else the one this file lives in."""
    return Path(os.environ.get("CTXTAG_PROJECT") or Path(__file__).resolve().parents[1])


@dag(
    dag_id="ctxtag_ingest",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["ctxtag", "data"],
    params={"source": Param(None, type=["null", "string"],
                            description="folder or s3://bucket/prefix holding date=YYYY-MM-DD/ log drops; "
                                        "empty: only the drops already in the project")},
    doc_md=__doc__,
)
def ctxtag_ingest():
    @task
    def fetch_drops(params=None, ds=None) -> int:
        """Copy the logical date's drops into data/incoming (skips files already there)."""
        from ctxtag.platform.orchestration import fetch, in_project

        if not params.get("source"):
            return 0
        with in_project(project_dir()) as p:
            return len(fetch(params["source"], p.paths.incoming_logs, ds))

    @task
    def ingest_logs(_copied: int) -> str:
        """Validate and append to the lake (bad rows quarantined with file, row, reason)."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "--force", "ingest_logs")[-2000:]

    @task(retries=0)                  # a data gate that fails fails again: say so at once
    def validate(_ingested: str) -> str:
        """Great Expectations gates; a failure stops the run before Feast (report: data docs)."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "validate")[-2000:]

    @task(outlets=[FEATURES])
    def publish_features(_validated: str) -> str:
        """Today's user snapshots to Feast, beside the current listening embeddings: --single-item,
        so a daily ingest never retrains the embeddings (ctxtag_retrain does, then republishes)."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "--single-item", "publish_features")[-2000:]

    @task
    def serve_features(_published) -> dict:
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

    if DATA_PLANE == "spark":
        # the provider is imported only here: parsing the embedded DAG stays airflow + stdlib
        from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

        def submit(stage: str, **kw) -> SparkSubmitOperator:
            return SparkSubmitOperator(
                task_id=stage.replace("-", "_"), conn_id="spark_default", name=f"ctxtag-{stage}",
                application=str(project_dir() / "ctxtag/listening/spark_main.py"),
                application_args=[stage, "--project", str(project_dir())],
                conf={"spark.sql.session.timeZone": "UTC"}, **kw)

        ingested, published = submit("ingest-logs"), submit("publish-features", outlets=[FEATURES])
        fetch_drops() >> ingested
        validate(ingested.output) >> published
        serve_features(published.output)
    else:
        serve_features(publish_features(validate(ingest_logs(fetch_drops()))))


ctxtag_ingest()
