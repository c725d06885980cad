"""ctxtag_retrain — weekly (Monday 03:00 UTC) and whenever new features land (`ctxtag_features`):
retrain and evaluate the audio tagger (every Table-2 loss configuration, one mapped task each),
tag the catalogue (one mapped task per partition), retrain the listening embeddings (Chen et al.)
and the user models, register the tagger, the context model and the listening embeddings as
@challenger, promote each to @champion only if its gate passes, and then — only if a champion
moved (or the served store lags the champions) — republish the served features from the champions
(`ctxtag publish`: one switch). Refused by every gate: nothing any client can observe changes.

The tasks are the pipeline's DVC stages, each run alone (`dvc repro --single-item <stage>`), wired
as dvc.yaml wires them (tests/dags/test_dags.py holds the two graphs equal): what does not depend
on the tagger (the Chen et al. front-end) starts at once, the tagger's evaluation and robustness
run beside the catalogue's tagging, and a rerun with nothing changed retrains nothing and registers
no new version. The user models wait for the embeddings: they read the listening embeddings
through the offline store.

Training tasks go to queue and pool `gpu`: with CeleryExecutor they run on the GPU workers; the
embedded LocalExecutor runs them locally. DVC runs one stage at a time per project checkout (its
lock; tasks wait for it), so parallel tasks overlap only in the work outside DVC (the catalogue's
partitions) unless workers have checkouts of their own.

Paused or not at creation is the deployment's choice, Airflow's [core] dags_are_paused_at_creation:
the production stack starts it unpaused (it runs on its schedule, and every promotion passes a
gate); `make airflow` keeps Airflow's default, paused, so a developer's checkout runs nothing
(no stage rewrites its outputs) until they unpause it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

if str(Path(__file__).parent) not in sys.path:        # ctxtag_common.py lies beside this file
    sys.path.insert(0, str(Path(__file__).parent))
from ctxtag_common import FEATURES, GPU, RETRIES, project_dir, push, stage


@dag(
    dag_id="ctxtag_retrain",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=FEATURES),
    # no start_date: with catchup=False, CronTriggerTimetable's run_immediately=False makes a new
    # deployment's first scheduled retrain the next Monday 03:00, not one at once for the Monday
    # just past (a start date would: the latest past point after it); features landing start one
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=None,      # the deployment's choice (module docstring)
    default_args=RETRIES,
    tags=["ctxtag", "training"],
    doc_md=__doc__,
)
def ctxtag_retrain():
    @task
    def loss_configs() -> list[str]:
        """The loss configurations to train (params.yaml train.configs: dvc.yaml's train@ items)."""
        from ctxtag.platform.orchestration import in_project

        with in_project(project_dir()) as params:
            return list(params.train.configs)

    @task(map_index_template="{{ loss }}", **GPU)
    def train(loss: str) -> dict:
        """One loss configuration of the CNN: `dvc repro --single-item train@<loss>` (resumable)."""
        from ctxtag.platform.orchestration import repro

        get_current_context()["loss"] = loss
        return repro(project_dir(), f"train@{loss}")

    @task
    def plan_track_features() -> list[int]:
        """The catalogue's partitions (track_features.partitions); a current part skips itself."""
        from ctxtag.platform.orchestration import in_project
        from ctxtag.tagger.batch import plan_partitions

        with in_project(project_dir()) as params:
            return plan_partitions(params)

    @task(map_index_template="{{ partition }}", **GPU)
    def tag_partition(k: int) -> dict:
        """One partition of the catalogue through the tagger: resumable, idempotent by content hash."""
        from ctxtag.platform.orchestration import in_project, worker_name
        from ctxtag.tagger.batch import run_partition

        get_current_context()["partition"] = str(k)
        with in_project(project_dir()) as params:
            return {**run_partition(params, k), "worker": worker_name()}

    @task
    def register(dag_run=None) -> dict:
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

    # the lake as dvc.lock knows it: ctxtag_ingest keeps it current (a no-op then); in a new
    # deployment, or after a change to the ingest code, the lake is (re)built from the drops first
    ingest_logs = stage("ingest_logs")
    # the tagger: labels -> split -> weights, the CNN's front-end, then each loss configuration
    label, split, weights, features = stage("label"), stage("split"), stage("weights"), stage("features")
    trained = train.expand(loss=loss_configs())
    label >> split >> weights >> trained
    label >> features >> trained
    evaluate, robustness = stage("evaluate"), stage("robustness")
    trained >> [evaluate, robustness]
    # the catalogue through the chosen configuration, a mapped task per partition; the stage then
    # finds every part current and only combines them (and records them in dvc.lock)
    planned = plan_track_features()
    trained >> planned
    track_features = stage("track_features")
    tag_partition.expand(k=planned) >> track_features
    # the data gates see the new track features before they reach the offline store
    validate = stage("validate", retries=0)
    [track_features, ingest_logs] >> validate
    # Chen et al.: the front-end needs only the audio, so it starts with the tagger
    embedding_features = stage("embedding_features")
    embeddings = stage("embeddings", **GPU)
    [embedding_features, track_features, split, ingest_logs] >> embeddings
    publish_features, streams, user_models = stage("publish_features"), stage("streams"), stage("user_models", **GPU)
    [embeddings, validate] >> publish_features >> streams >> user_models
    registered = register()
    [evaluate, robustness, user_models] >> registered
    republish(promoted(promote(registered)))
    registered >> push()


ctxtag_retrain()
