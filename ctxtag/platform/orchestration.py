"""What the Airflow tasks call: `dvc repro` of one stage in the project, and fetching a day's
drops from a local folder or S3 into the project's incoming folder.

Tasks run the DVC stages (not a copy of their logic), so a DAG run and `dvc repro` produce the
same outputs and the same dvc.lock; reruns of a logical date are no-ops where nothing changed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ctxtag.common.io import atomic_path


class StageFailed(RuntimeError):
    pass


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def repro(project: Path, stage: str, force: bool = False) -> dict:
    """`dvc repro --single-item STAGE` in ``project``: that stage alone (the DAG orders the stages,
    so a task never reruns its upstream: no task can re-render the demo world), waiting for
    DVC's project lock while another task's stage holds it. Its output is streamed line by line
    to the task's log as it comes; a small JSON summary is returned for XCom.

    ``force``: run even if DVC sees no change (ingest: its new drops are not a DVC dependency;
    it is idempotent, so a forced rerun writes nothing twice)."""
    cmd = [_dvc_bin(), "--wait-for-lock", "repro", "--single-item",
           *(["--force"] if force else []), stage]
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=60)
    ran = False
    with subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail.append(line)
            ran = ran or line.startswith("Running stage")
    if proc.returncode != 0:
        raise StageFailed(f"dvc repro {stage} failed (exit {proc.returncode}) in {project}:\n{''.join(tail)}")
    return {"stage": stage, "ran": ran, "seconds": round(time.monotonic() - start, 1), "worker": worker_name()}


def _dvc_bin() -> str:
    """This environment's dvc (a task's interpreter may not have its venv on PATH)."""
    dvc = Path(sys.executable).parent / "dvc"
    return str(dvc) if dvc.exists() else "dvc"


def _dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([_dvc_bin(), *args], cwd=project, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise StageFailed(f"dvc {' '.join(args)} failed in {project}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def dvc_push(project: Path) -> dict:
    """`dvc push` of the pipeline's outputs to the project's default remote (the stack's S3), so a
    fresh clone's `dvc pull` restores them; then, where $CTXTAG_COMMIT_LOCK is set (a deployment's
    own checkout), dvc.lock is committed to its git history, so that clone knows what to pull.
    No remote configured: nothing to share, nothing done."""
    found = _dvc(project, "remote", "default", check=False)         # exit 1, "No default remote set"
    remote = found.stdout.strip() if found.returncode == 0 else ""
    if not remote:
        return {"remote": None, "pushed": 0, "worker": worker_name()}
    out = _dvc(project, "--wait-for-lock", "push").stdout
    print(out, flush=True)
    pushed = re.search(r"(\d+) files? pushed", out)
    committed = None
    if os.environ.get("CTXTAG_COMMIT_LOCK") and (Path(project) / ".git").exists():
        committed = _commit_lock(Path(project), f"pipeline outputs pushed to {remote}")
    return {"remote": remote, "pushed": int(pushed.group(1)) if pushed else 0, "commit": committed,
            "worker": worker_name()}


def _commit_lock(project: Path, message: str) -> str:
    """Commit dvc.lock and the outputs git holds (metrics, plots: `cache: false`; new ones too) to the
    project's history; the rest of the tree (code, params) is the deployment's own business. The
    commit's id."""
    import yaml

    git = ["git", "-C", str(project)]
    lock = yaml.safe_load((project / "dvc.lock").read_text()) or {}
    outs = sorted({o["path"] for st in lock.get("stages", {}).values() for o in st.get("outs", [])})
    # changed or new (not ignored: DVC ignores the outputs it caches) ...
    changed = subprocess.run([*git, "ls-files", "-m", "-o", "--exclude-standard", "--", "dvc.lock", *outs],
                             capture_output=True, text=True, check=True).stdout.split()
    if changed:
        subprocess.run([*git, "add", "--", *changed], check=True)
    # ... and what DVC staged itself
    staged = subprocess.run([*git, "diff", "--cached", "--name-only", "--", "dvc.lock", *outs], capture_output=True,
                            text=True, check=True).stdout.split()
    if staged:
        subprocess.run([*git, "commit", "-q", "-m", message, "--", *staged], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def worker_name() -> str:
    """Which worker ran a task: $CTXTAG_WORKER_NAME (the stack names its Celery workers), else the host."""
    return os.environ.get("CTXTAG_WORKER_NAME") or socket.gethostname()


def run_date(logical_date: datetime | None, run_after: datetime | None, chosen: str | None = None) -> str:
    """The UTC day whose drops a run fetches: ``chosen`` (the run's `date` param), else the logical
    date's day, else (a manual run without a logical date, allowed in Airflow 3) the last complete
    day before the run. Never None: a bad date stops the run before anything is written."""
    if chosen:
        if not DATE.match(chosen):
            raise ValueError(f"date {chosen!r} is not YYYY-MM-DD")
        return chosen
    if logical_date is not None:
        return logical_date.astimezone(UTC).strftime("%Y-%m-%d")
    if run_after is None:
        raise ValueError("a run with neither a logical date nor run_after: no day to fetch")
    return (run_after.astimezone(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


def fetch(source: str, dest: Path, date: str) -> list[Path]:
    """Copy ``<source>/date=<date>/*`` (a local folder or ``s3://bucket/prefix``) to ``dest/date=<date>/``.

    Files already there with the same size are skipped, so a rerun copies nothing; each file lands
    whole (written beside, then renamed). S3 is reached with boto3's own configuration: the
    endpoint from $AWS_ENDPOINT_URL (a local S3 such as the stack's), keys from the environment."""
    if not DATE.match(date or ""):
        raise ValueError(f"date {date!r} is not YYYY-MM-DD")
    out = dest / f"date={date}"
    copied: list[Path] = []
    if source.startswith("s3://"):
        import boto3

        bucket, _, prefix = source[5:].partition("/")
        prefix = f"{prefix.rstrip('/')}/date={date}/".lstrip("/")
        s3 = boto3.client("s3")
        objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if not objects:
            raise FileNotFoundError(f"s3://{bucket}/{prefix}: no drops for {date}")
        out.mkdir(parents=True, exist_ok=True)
        for obj in objects:
            target = out / Path(obj["Key"]).name
            if not (target.exists() and target.stat().st_size == obj["Size"]):
                with atomic_path(target) as tmp:
                    s3.download_file(bucket, obj["Key"], str(tmp))
                copied.append(target)
        return copied
    folder = Path(source) / f"date={date}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no drops for {date}")
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir()):
        target = out / f.name
        if f.is_file() and not (target.exists() and target.stat().st_size == f.stat().st_size):
            with atomic_path(target) as tmp:
                shutil.copy2(f, tmp)
            copied.append(target)
    return copied


def online_store() -> dict[str, str | None]:
    """The served online store the tasks publish into: $CTXTAG_ONLINE_STORE (sqlite or redis),
    $CTXTAG_REDIS_URL and $CTXTAG_FEAST_REGISTRY (a shared SQL registry), as for the CLI."""
    return {"online": os.environ.get("CTXTAG_ONLINE_STORE", "sqlite"),
            "redis_url": os.environ.get("CTXTAG_REDIS_URL", "localhost:6379"),
            "registry": os.environ.get("CTXTAG_FEAST_REGISTRY") or None}


class in_project:
    """Run with ``project`` as the working directory (params.yaml paths are relative to it) and
    the acting user recorded for the registry's audit trail; both restored afterwards."""

    def __init__(self, project: Path, actor: str | None = None):
        self.project, self.actor = Path(project), actor

    def __enter__(self):
        from ctxtag.config import load_params

        self._cwd, self._actor = Path.cwd(), os.environ.get("CTXTAG_ACTOR")
        os.chdir(self.project)
        if self.actor:
            os.environ["CTXTAG_ACTOR"] = self.actor
        return load_params(self.project / "params.yaml")

    def __exit__(self, *exc) -> None:
        os.chdir(self._cwd)
        if self._actor is None:
            os.environ.pop("CTXTAG_ACTOR", None)
        else:
            os.environ["CTXTAG_ACTOR"] = self._actor
