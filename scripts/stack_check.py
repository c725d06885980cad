"""`make stack-check`: the production stack (scripts/stack.sh up) doing a day's work, checked end to end.

Through Airflow's REST API: a day's listening-log drop is put in S3, the ingest DAG is triggered
for that day, then the retrain DAG; both must succeed on the Celery workers. Then:
- the drop's events are in the lake once;
- the training tasks ran on the `gpu`-queue worker, the rest on the default one (each task's
  queue, and the worker its XCom result names);
- every model family has a @champion on the MLflow server, its run's artifacts in S3, and a gate
  decision in its audit trail;
- the API answers with the champions' versions;
- another service reads the served store through the shared Feast registry in Postgres (Feast's
  feature server, given the registry's URL and the Redis only);
- a fresh clone of the deployment restores the pipeline's outputs with `dvc pull` from S3;
- rerunning both days' runs changes nothing (lake, registry versions, dvc.lock);
- screenshots of both DAGs' runs (docs/) when a browser is at hand (`--screenshots`).

It prints each step with its time, and on a failed run the failed tasks' log tails. Run with the
environment `scripts/stack.sh check` sets (the stack's URLs and credentials).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Path(os.environ["CTXTAG_PROJECT"])
AIRFLOW = f"http://127.0.0.1:{os.environ['STACK_AIRFLOW_PORT']}"
API = f"http://127.0.0.1:{os.environ['STACK_API_PORT']}"
GPU_TASKS = {"train", "tag_partition", "embeddings", "user_models"}
T0 = time.monotonic()


def deployment_params():
    """The deployment's params (params.small.yaml merged in by scripts/stack.sh)."""
    from ctxtag.config import load_params

    return load_params(PROJECT / "params.yaml")


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f} s] {msg}", flush=True)


class CheckFailed(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)
    say(f"ok: {what}")


class Airflow:
    """The REST API (v2) with a token from the simple auth manager."""

    def __init__(self, base: str):
        user = os.environ["STACK_AIRFLOW_USER"]
        password = json.loads(Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())[user]
        self.http = httpx.Client(base_url=base, timeout=30)
        token = self.http.post("/auth/token", json={"username": user, "password": password})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params) -> dict:
        r = self.http.get(f"/api/v2{path}", params=params)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> dict:
        r = self.http.post(f"/api/v2{path}", json=body)
        if r.status_code >= 400:
            raise CheckFailed(f"POST {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict | None = None) -> str:
        """A new run; where one of that logical date exists already (a second check on the same
        stack), that run is cleared and runs again instead."""
        r = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf or {}})
        if r.status_code == 409 and logical_date:
            (run,) = self.get(f"/dags/{dag_id}/dagRuns", logical_date_gte=logical_date,
                              logical_date_lte=logical_date)["dag_runs"]
            self.clear(dag_id, run["dag_run_id"])
            return run["dag_run_id"]
        if r.status_code >= 400:
            raise CheckFailed(f"triggering {dag_id}: {r.status_code} {r.text[:500]}")
        say(f"triggered {dag_id} run {r.json()['dag_run_id']}")
        return r.json()["dag_run_id"]

    def asset_run(self, dag_id: str, after: str, wait_s: float = 60) -> str | None:
        """The run the asset event of run ``after`` started (it may take a scheduler loop or two);
        None where that run updated no asset."""
        published = self.get(f"/dags/ctxtag_ingest/dagRuns/{after}/taskInstances/publish_features")
        if published["state"] != "success":
            return None
        since = self.get(f"/dags/ctxtag_ingest/dagRuns/{after}")["start_date"]
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            runs = self.get(f"/dags/{dag_id}/dagRuns", run_after_gte=since)["dag_runs"]
            started = sorted((r for r in runs if r["run_type"] == "asset_triggered"), key=lambda r: r["run_after"])
            if started:
                say(f"{dag_id} run {started[-1]['dag_run_id']}, started by the asset event of {after}")
                return started[-1]["dag_run_id"]
            time.sleep(3)
        return None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=500)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, ti: dict):
        r = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/return_value",
                          params={"map_index": ti["map_index"], "deserialize": True})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        value = r.json()["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def log_tail(self, dag_id: str, run_id: str, ti: dict, chars: int = 2500) -> str:
        r = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}",
                          params={"map_index": ti["map_index"], "full_content": True}, headers={"Accept": "text/plain"})
        return r.text[-chars:]

    def wait(self, dag_id: str, run_id: str, timeout_s: float) -> dict:
        deadline, last = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            tis = self.task_instances(dag_id, run_id)
            done = [t for t in tis if t["state"] in ("success", "skipped")]
            if len(done) != last:
                say(f"{dag_id}: {run['state']}, {len(done)}/{len(tis)} tasks done")
                last = len(done)
            if run["state"] == "success":
                return run
            if run["state"] == "failed":
                for t in tis:
                    if t["state"] in ("failed", "upstream_failed"):
                        print(f"--- {t['task_id']}[{t['map_index']}] {t['state']}", file=sys.stderr)
                        if t["state"] == "failed":
                            print(self.log_tail(dag_id, run_id, t), file=sys.stderr)
                raise CheckFailed(f"{dag_id} run {run_id} failed")
            time.sleep(5)
        raise CheckFailed(f"{dag_id} run {run_id} not done after {timeout_s:.0f} s")

    def clear(self, dag_id: str, run_id: str) -> None:
        """Rerun a whole run (the same logical date), as the UI's Clear does."""
        self.post(f"/dags/{dag_id}/clearTaskInstances", {"dag_run_id": run_id, "dry_run": False,
                                                        "only_failed": False, "reset_dag_runs": True})
        say(f"cleared {dag_id} run {run_id}: it runs again")


def lake_keys() -> list[tuple]:
    """(user, track, UTC instant as text) of every event in the deployment's lake (the small world's)."""
    from ctxtag.listening.lake import read_lake

    lake = read_lake(PROJECT / deployment_params().paths.lake, ["user_id", "track_id", "event_timestamp"])
    return list(zip(lake["user_id"], lake["track_id"], lake["event_timestamp"].astype(str), strict=True))


def put_drop(rows: int = 25, shift_s: int = 7) -> tuple[str, list[tuple]]:
    """A drop of ``rows`` new events for one UTC day in S3 (real rows of the world's logs, ``shift_s``
    seconds later: new events of known users and tracks). Returns the day and the events' keys."""
    import boto3
    import pandas as pd

    first = sorted((PROJECT / "data/raw/listening_logs").glob("*.csv"))[0]
    drop = pd.read_csv(first, dtype=str).head(rows)
    stamps = drop["timestamp"].map(lambda s: pd.Timestamp(s) + pd.Timedelta(seconds=shift_s))   # offsets kept
    drop["timestamp"] = stamps.map(lambda t: t.isoformat())
    day = pd.Timestamp(stamps.iloc[0]).tz_convert("UTC").strftime("%Y-%m-%d")
    key = f"{os.environ['STACK_DROPS_PREFIX']}/date={day}/drop-{rows}-{shift_s}.csv"
    boto3.client("s3").put_object(Bucket=os.environ["STACK_DROPS_BUCKET"], Key=key,
                                  Body=drop.to_csv(index=False).encode())
    say(f"drop of {rows} events for {day} at s3://{os.environ['STACK_DROPS_BUCKET']}/{key}")
    keys = [(u, t, str(pd.Timestamp(s).tz_convert("UTC").to_pydatetime()))
            for u, t, s in zip(drop["user_id"], drop["track_id"], drop["timestamp"], strict=True)]
    return day, keys


def ingest_day(af: Airflow, timeout_s: float, **drop) -> tuple[str, str, list[tuple]]:
    """A day's drop in S3 (``put_drop(**drop)``), its ingest run waited for, and the retrain run
    that follows it (not waited for): (ingest run, retrain run, the drop's lake keys). Where the
    snapshots updated the ctxtag_features asset the scheduler starts the retrain on its own (not in
    a new deployment: until the first retrain the ingest stops after the lake); else it is triggered."""
    day, keys = put_drop(**drop)
    ingest = af.trigger("ctxtag_ingest", f"{day}T01:00:00Z")
    af.wait("ctxtag_ingest", ingest, timeout_s)
    return ingest, af.asset_run("ctxtag_retrain", after=ingest) or af.trigger("ctxtag_retrain", None), keys


def check_workers(af: Airflow, dag_id: str, run_id: str) -> None:
    tis = [t for t in af.task_instances(dag_id, run_id) if t["state"] == "success"]
    where = {}
    for t in tis:
        result = af.xcom(dag_id, run_id, t)
        worker = result.get("worker") if isinstance(result, dict) else None
        where.setdefault(t["task_id"], set()).add((t["queue"], worker))
    gpu = {k: v for k, v in where.items() if k in GPU_TASKS}
    if dag_id == "ctxtag_retrain":
        expect(gpu.keys() == GPU_TASKS and all(v == {("gpu", "gpu-worker")} for v in gpu.values()),
               f"{dag_id}: the training tasks ran on the gpu worker ({sorted(gpu)})")
    cpu = {k: v for k, v in where.items() if k not in GPU_TASKS and any(w for _, w in v)}
    expect(all(v == {("default", "cpu-worker")} for v in cpu.values()),
           f"{dag_id}: the other tasks on the default worker ({len(cpu)} report where they ran)")


def check_registry() -> dict[str, str]:
    """Every family's @champion on the server, its artifacts in S3, a gate decision audited."""
    import boto3
    from mlflow import MlflowClient

    from ctxtag.platform.registry import audit_log, model_name
    from ctxtag.vocabulary import MODEL_FAMILIES

    params = deployment_params()
    client = MlflowClient()
    s3 = boto3.client("s3")
    champions = {}
    for family in MODEL_FAMILIES:
        name = model_name(params, family)
        mv = client.get_model_version_by_alias(name, "champion")
        # the version's model (MLflow 3: a logged model, models:/m-...) and where its files are:
        # proxied artifacts (mlflow-artifacts:/<experiment>/models/<id>/artifacts) lie under that key
        location = client.get_logged_model(mv.source.removeprefix("models:/")).artifact_location
        prefix = location.split(":", 1)[1].lstrip("/")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["STACK_MLFLOW_BUCKET"], Prefix=prefix)
        in_s3 = [o["Key"] for page in pages for o in page.get("Contents", [])]
        expect(any(k.endswith("/MLmodel") for k in in_s3),
               f"{name} v{mv.version} (@champion): its model in S3 ({len(in_s3)} objects under {location})")
        actions = [e["action"] for e in audit_log(client, name)]
        expect("promote" in actions, f"{name}: the gate's decision audited ({actions})")
        champions[family] = mv.version
    return champions


def check_api(champions: dict[str, str], timeout_s: float = 120) -> None:
    deadline, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{API}/version", timeout=10)
            if r.status_code == 200:
                seen = r.json()
                served = json.dumps(seen)
                if all(f"/{v}" in served or f'"{v}"' in served for v in champions.values()):
                    expect(True, f"the API answers with the champions ({seen['models']})")
                    return
        except httpx.HTTPError:
            pass
        time.sleep(3)
    raise CheckFailed(f"the API does not answer with the champions {champions} after {timeout_s:.0f} s: {seen}")


def check_feast(timeout_s: float = 180) -> None:
    """Another service on the served store: Feast's own feature server, given only the shared
    registry's URL and the Redis (feature_repo/feast_cli.py; no file of the deployment), answers
    the published version's track features and a user's snapshot through the feature services."""
    import socket

    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from ctxtag.common.io import stop_process_group
    from ctxtag.platform.feature_store import published

    served = PROJECT / deployment_params().paths.online
    stamp = published(served) or {}
    engine = sa.create_engine(os.environ["CTXTAG_FEAST_REGISTRY"])
    with engine.connect() as c:
        views = sorted(c.execute(sa.text("SELECT feature_view_name FROM feature_views WHERE project_id = 'ctxtag'")).scalars())
    engine.dispose()
    view = stamp.get("track_features", {}).get("view")
    expect(view in views and not list(served.glob("registry*.db")),
           f"the Feast registry is in Postgres ({len(views)} views, the served {view} among them), no registry file")
    table = pq.read_table(served / stamp["track_features"]["file"], columns=["track_id", "context_probs"])
    track, probs = table.column(0)[0].as_py(), table.column(1)[0].as_py()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="ctxtag-reader-") as tmp:
        params = Path(tmp) / "params.yaml"        # nothing of the deployment's but what a service is told
        params.write_text("paths: {online: /nonexistent}\n")
        server = subprocess.Popen([sys.executable, str(ROOT / "feature_repo/feast_cli.py"), "--params", str(params),
                                   "serve", "-h", "127.0.0.1", "-p", str(port)], cwd=tmp,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline, got = time.monotonic() + timeout_s, None
            while got is None:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise CheckFailed(f"feast serve on the shared registry did not answer: {server.stdout.read()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    r = httpx.post(f"http://127.0.0.1:{port}/get-online-features", timeout=10,
                                   json={"feature_service": "track_contexts", "entities": {"track_id": [track]}})
                    if r.status_code == 200:
                        got = r.json()
                if got is None:
                    time.sleep(2)
            names = got["metadata"]["feature_names"]
            values = got["results"][names.index("context_probs")]["values"][0]
            expect(values is not None and max(abs(a - b) for a, b in zip(values, probs, strict=True)) < 1e-6,
                   f"feast serve (another service: the registry's URL and Redis only) answers {track}'s "
                   f"context probabilities of {stamp['model']} through track_contexts")
            user = stamp.get("probe_user")
            r = httpx.post(f"http://127.0.0.1:{port}/get-online-features", timeout=10,
                           json={"feature_service": "situational_model", "entities": {"user_id": [user]}})
            names = r.json()["metadata"]["feature_names"]
            streams = r.json()["results"][names.index("n_streams")]["values"][0]
            expect(r.status_code == 200 and streams is not None,
                   f"... and user {user}'s snapshot through situational_model (n_streams {streams})")
        finally:
            stop_process_group(server)


def check_dvc_pull() -> None:
    """A fresh clone of the deployment, the same remote: `dvc pull` restores every cached output."""
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="ctxtag-clone-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(PROJECT), str(clone)], check=True)
        shutil.copy(PROJECT / ".dvc/config.local", clone / ".dvc/config.local")
        subprocess.run([dvc, "pull", "-q"], cwd=clone, check=True)
        # what the remote holds: the cached outputs of the pipeline's stages (`cache: false` ones,
        # the rendered audio, metrics and plots, are re-made or live in git)
        from dvc.repo import Repo

        outs = sorted({str(o.fs_path) for st in Repo(str(clone)).index.stages for o in st.outs if o.use_cache})
        missing = [o for o in outs if not Path(o).exists()]
        expect(not missing, f"dvc pull in a fresh clone restored {len(outs)} outputs from S3 (missing: {missing})")
        paths = deployment_params().paths
        for path in (paths.models, paths.track_features_parquet):
            a, b = _digest(PROJECT / path), _digest(clone / path)
            expect(bool(a) and a == b, f"{path}: the clone's {len(b)} files equal the deployment's")


def _digest(path: Path) -> dict[str, str]:
    """Each file under ``path`` (or ``path`` itself) by its name relative to it, with its sha256."""
    from ctxtag.common.io import file_sha256

    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f.relative_to(path if path.is_dir() else path.parent)): file_sha256(f) for f in files if f.is_file()}


def pipeline_state() -> dict:
    """dvc.lock's stages, but for the ingest's own report (its counts are of the last run: a rerun
    wrote no event and says so)."""
    import yaml

    stages = yaml.safe_load((PROJECT / "dvc.lock").read_text())["stages"]
    stages["ingest_logs"]["outs"] = [o for o in stages["ingest_logs"]["outs"] if not o["path"].startswith("reports/")]
    return stages


def registry_versions() -> dict[str, int]:
    from mlflow import MlflowClient

    client = MlflowClient()
    return {m.name: len(client.search_model_versions(f"name='{m.name}'")) for m in client.search_registered_models()}


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (a Celery worker, its task supervisors, their dvc and
    training processes), as a machine that dies takes them."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def gpu_consumers() -> int:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", os.environ["STACK_RABBITMQ_VHOST"], "name",
                          "consumers"], capture_output=True, text=True).stdout
    return sum(int(n) for name, n in (line.split() for line in out.splitlines() if line.count("\t") == 1)
               if name == "gpu")


def check_faults(af: Airflow, timeout_s: float) -> None:
    """A day whose events retrain the listening embeddings and the user models (on the gpu worker):
    the gpu worker is killed (kill -9, with its tasks) while the embeddings train, and the broker is
    stopped for a minute; the run must still succeed, the killed task retried."""

    # a retrain still under way (a new stack's first) would take the new events before the run below
    deadline = time.monotonic() + timeout_s
    while af.get("/dags/ctxtag_retrain/dagRuns", state=["queued", "running"])["total_entries"]:
        if time.monotonic() > deadline:
            raise CheckFailed("a retrain run is still going after the timeout")
        time.sleep(5)
    _, retrain, keys = ingest_day(af, timeout_s, rows=40, shift_s=11 + int(time.time()) % 50_000)  # new events
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:                     # the embeddings training, under way
        ti = af.get(f"/dags/ctxtag_retrain/dagRuns/{retrain}/taskInstances/embeddings")
        if ti["state"] == "running" and ti["start_date"]:
            break
        if ti["state"] in ("success", "failed", "upstream_failed"):
            raise CheckFailed(f"embeddings {ti['state']} before the worker could be killed")
        time.sleep(2)
    time.sleep(10)
    ti = af.get(f"/dags/ctxtag_retrain/dagRuns/{retrain}/taskInstances/embeddings")
    if ti["state"] != "running":
        raise CheckFailed(f"embeddings {ti['state']} within 10 s: no training to interrupt (no new events?)")
    supervisor = int((Path(os.environ["STACK_HOME"]) / "run/airflow-gpu-worker.pid").read_text())
    killed = _tree(supervisor)[1:]                 # the worker and its tasks; its supervisor restarts it
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    say(f"killed the gpu worker mid-task: kill -9 of {len(killed)} processes (embeddings, try {ti['try_number']})")
    deadline = time.monotonic() + 120
    while not gpu_consumers():
        if time.monotonic() > deadline:
            raise CheckFailed("the gpu worker did not come back within 120 s")
        time.sleep(2)
    say("the gpu worker is back (restarted by its supervisor) and consuming the gpu queue")
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
    say("broker stopped (rabbitmqctl stop_app) for 60 s")
    try:
        time.sleep(60)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)
    say("broker back")
    af.wait("ctxtag_retrain", retrain, timeout_s)
    # run again: a retry for the lost heartbeat (a new try), or the same try from the message the
    # broker redelivered to the restarted worker (Celery acknowledges a task when it ends)
    again = af.get(f"/dags/ctxtag_retrain/dagRuns/{retrain}/taskInstances/embeddings")
    restarted = datetime.fromisoformat(again["start_date"].replace("Z", "+00:00"))
    expect(again["state"] == "success" and (again["try_number"] > ti["try_number"] or restarted > killed_at),
           f"faults: the killed embeddings task ran again (try {again['try_number']}, started "
           f"{(restarted - killed_at).total_seconds():.0f} s after the kill) and the run succeeded")
    expect(all(lake_keys().count(k) == 1 for k in keys), "faults: the day's events in the lake once")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=2400, help="seconds for each DAG run")
    ap.add_argument("--screenshots", action="store_true", help="regenerate docs/*.png from the runs")
    ap.add_argument("--faults", action="store_true", help="then kill the gpu worker mid-task and stop the broker")
    ap.add_argument("--faults-only", action="store_true", help="the faults alone (a stack that passed the check)")
    args = ap.parse_args()
    af = Airflow(AIRFLOW)
    deadline = time.monotonic() + 180
    while {d["dag_id"] for d in af.get("/dags")["dags"]} != {"ctxtag_ingest", "ctxtag_retrain"}:
        if time.monotonic() > deadline:
            raise CheckFailed("the DAG processor has not parsed both DAGs after 180 s")
        time.sleep(3)
    for dag_id in ("ctxtag_ingest", "ctxtag_retrain"):
        expect(not af.get(f"/dags/{dag_id}")["is_paused"], f"{dag_id} is unpaused")
    if args.faults_only:
        check_faults(af, args.timeout)
        return 0

    ingest, retrain, keys = ingest_day(af, args.timeout)
    held = lake_keys()
    expect(all(held.count(k) == 1 for k in keys), f"the drop's {len(keys)} events are in the lake, each once")
    check_workers(af, "ctxtag_ingest", ingest)
    af.wait("ctxtag_retrain", retrain, args.timeout)
    check_workers(af, "ctxtag_retrain", retrain)
    champions = check_registry()
    check_api(champions)
    check_feast()
    check_dvc_pull()

    # the same dates again: nothing changes (the forced ingest runs, finds every event in the lake,
    # and its report says so; every other stage is skipped by DVC)
    lock, versions, n_lake = pipeline_state(), registry_versions(), len(held)
    for dag_id, run_id in (("ctxtag_ingest", ingest), ("ctxtag_retrain", retrain)):
        af.clear(dag_id, run_id)
        time.sleep(3)
        af.wait(dag_id, run_id, args.timeout)
        ran = sorted({t["task_id"] for t in af.task_instances(dag_id, run_id)
                      if (r := af.xcom(dag_id, run_id, t)) and isinstance(r, dict) and r.get("ran")})
        expect(ran == (["ingest_logs"] if dag_id == "ctxtag_ingest" else []),
               f"rerun of {dag_id}: the stages that ran: {ran}")
        if dag_id == "ctxtag_ingest":
            state = af.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/features_updated")["state"]
            expect(state == "skipped", f"rerun of {dag_id}: features_updated {state}: no asset event, no retraining started")
    expect(len(lake_keys()) == n_lake, "rerun: the lake is unchanged")
    report = json.loads((PROJECT / deployment_params().paths.report("ingest_logs")).read_text())
    expect(report["drops_read"] == 0 and report["drops_already_ingested"] > 0,
           f"rerun: the ingest read no drop ({report['drops_already_ingested']} already ingested, skipped unread)")
    expect(registry_versions() == versions, f"rerun: no new model version ({versions})")
    expect(pipeline_state() == lock, "rerun: every stage's inputs and outputs in dvc.lock unchanged")
    if args.screenshots:                   # the UI with both runs, as the README shows them
        token = af.http.headers["Authorization"].split()[1]
        subprocess.run(["bash", str(ROOT / "scripts/screenshot_dags.sh"), AIRFLOW, f"ctxtag_ingest={ingest}",
                        f"ctxtag_retrain={retrain}", f"ctxtag_retrain={retrain}/embeddings"], check=True,
                       env={**os.environ, "AIRFLOW_TOKEN": token})
    if args.faults:
        check_faults(af, args.timeout)
    say("stack-check passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
        sys.exit(1)
