"""What both ctxtag DAGs share: the project they work in, retries, the features asset, and the task
that runs one DVC stage. Airflow and the standard library only (the DAG files stay fast to parse);
listed in .airflowignore, as it defines no DAG."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, task

# updated when the daily user snapshots land in the offline store; ctxtag_retrain runs on it
FEATURES = Asset(name="ctxtag_features", uri="file:///ctxtag/feast/features")
# a service that is down (broker, metadata DB, MLflow, S3) is retried with backoff: 30 s, 1, 2 min;
# every task is idempotent (dvc repro, deduplicating ingest, resumable training), so a retry is safe.
# A try that hangs (a stage waiting on a lock whose holder hangs) is failed after 6 hours
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True,
           "max_retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=6)}
# training goes to the GPU workers (CeleryExecutor: `airflow celery worker --queues gpu`); the pool
# bounds how many run at once (its slots = the GPUs)
GPU = {"queue": "gpu", "pool": "gpu"}


def project_dir() -> Path:
    """The ctxtag checkout the tasks work in: $CTXTAG_PROJECT, else the one this file lives in."""
    return Path(os.environ.get("CTXTAG_PROJECT") or Path(__file__).resolve().parents[1])


def stage(name: str, force: bool = False, **task_args):
    """A task running the DVC stage ``name`` alone (`dvc repro --single-item`): the DAG's edges
    are the pipeline's, so no task runs another's stage, and a stage whose inputs did not change
    is skipped by DVC (a rerun retrains nothing). Its log streams live; XCom gets a small summary."""

    @task(task_id=name, doc_md=f"`dvc repro --single-item{' --force' if force else ''} {name}` in the project",
          **task_args)
    def run_stage() -> dict:
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), name, force=force)

    return run_stage()


@task
def push() -> dict:
    """The pipeline's outputs to the project's DVC remote, where one is configured (the stack's S3);
    none configured: nothing to share, nothing done (the result says so)."""
    from ctxtag.platform.orchestration import dvc_push

    return dvc_push(project_dir())
