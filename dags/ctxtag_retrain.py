"""ctxtag_retrain — weekly (Monday 03:00 UTC) and whenever new features land (`ctxtag_features`):
retrain and evaluate the audio tagger (all Table-2 loss configurations), the listening embeddings
(Chen et al.: user branch + Siamese audio branch; republished to Feast) and the user models, then
register the tagger, the context model and the listening embeddings as @challenger, promote each
to @champion only if its gate passes, and then — only if a champion moved (or the served store lags
the champions) — republish the served features from the champions (`ctxtag publish`: the context
champion's track features and the embeddings champion's tables, one switch). Refused by
every gate: the run ends there, and nothing any client can observe changes.

Training tasks go to the `gpu` queue and pool: with CeleryExecutor they run on GPU workers; the
embedded LocalExecutor runs them locally. Each task runs `dvc repro <stage>`, so a rerun of the
same logical date with nothing changed retrains nothing and registers no new version.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

FEATURES = Asset(name="ctxtag_features", uri="file:///ctxtag/feast/features")
# a service that is down (broker, metadata DB, MLflow, S3) is retried with backoff: 30 s, 1, 2 min;
# every task is idempotent (dvc repro, deduplicating ingest, resumable training), so a retry is safe
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True,
           "max_retry_delay": timedelta(minutes=10)}
GPU = {"queue": "gpu", "pool": "gpu"}


def project_dir() -> Path:
    """The ctxtag checkout the tasks work in: $CTXTAG_PROJECT, else the one this file lives in."""
    return Path(os.environ.get("CTXTAG_PROJECT") or Path(__file__).resolve().parents[1])


@dag(
    dag_id="ctxtag_retrain",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=FEATURES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["ctxtag", "training"],
    doc_md=__doc__,
)
def ctxtag_retrain():
    @task(**GPU)
    def train_tagger() -> str:
        """features -> train@{loss configurations} -> evaluate."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "evaluate")[-2000:]

    @task
    def plan_track_features(_tagger: str) -> list[int]:
        """The catalogue's partitions (track_features.partitions); a current part skips itself."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.tagger.batch import plan_partitions

        with in_project(project_dir()) as params:
            return plan_partitions(params)

    @task(**GPU)
    def tag_partition(k: int) -> dict:
        """One partition of the catalogue through the tagger: resumable, idempotent by content hash."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.tagger.batch import run_partition

        with in_project(project_dir()) as params:
            return run_partition(params, k)

    @task
    def combine_track_features(results) -> dict:
        """The parts -> track_features.parquet (refused while one is missing or out of date)."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.tagger.batch import combine

        with in_project(project_dir()) as params:
            return combine(params, list(results))

    @task(**GPU)
    def train_embeddings(_features: dict) -> str:
        """liked / disliked tracks -> user branch (UE) + Siamese CNN (AE), Table 1, hit rate, transfer."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "embeddings")[-2000:]

    @task(**GPU)
    def train_user_models(_embeddings: str) -> str:
        """track features + listening embeddings -> Feast -> streams -> user-aware, situational and
        joint models."""
        from ctxtag.platform.orchestration import repro

        return repro(project_dir(), "user_models")[-2000:]

    @task
    def register(_users: str, dag_run=None) -> dict:
        """Every family as @challenger: the tagger, the pyfunc context model, the listening embeddings."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.platform.registry import register_each

        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        with in_project(project_dir(), actor) as params:
            registered = register_each(params, why=f"scheduled retraining ({dag_run.run_id})")
        return {family: r["version"] for family, r in registered.items()}

    @task
    def promote(versions: dict, dag_run=None) -> dict:
        """The gate decides, per family; a refusal is recorded in the audit trail and leaves
        @champion as is."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.platform.promotion import promote_each

        actor = f"airflow:{dag_run.dag_id}/{dag_run.run_id}"
        with in_project(project_dir(), actor) as params:
            return promote_each(params, versions, why="promotion gate after retraining")

    @task.short_circuit
    def promoted(decisions: dict) -> bool:
        """Go on to republish only if a gate let a challenger through, or what is published is not
        the champions' (a republish that failed before this rerun); refused: the rest is skipped."""
        if any(d.get("promoted") for d in decisions.values()):
            return True
        from ctxtag.platform.orchestration import in_project
        from ctxtag.platform.publication import stale

        with in_project(project_dir()) as params:
            return stale(params)

    @task
    def republish(_promoted: bool) -> dict:
        """The champions' features into the served store, switched whole (ctxtag.platform.publication)."""
        from ctxtag.platform.orchestration import in_project, online_store
        from ctxtag.platform.publication import publish

        with in_project(project_dir()) as params:
            return publish(params, **online_store())

    # the catalogue is tagged as a fan-out over workers; the embeddings stage then finds every
    # part current (its `dvc repro` only re-combines them)
    features = combine_track_features(tag_partition.expand(k=plan_track_features(train_tagger())))
    republish(promoted(promote(register(train_user_models(train_embeddings(features))))))


ctxtag_retrain()
