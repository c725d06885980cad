"""What the Airflow tasks call: `dvc repro` of named stages in the project, and fetching a logical
date's drops from a local folder or S3 into the project's incoming folder.

Tasks run the DVC stages (not a copy of their logic), so a DAG run and `dvc repro` produce the
same outputs and the same dvc.lock; reruns of a logical date are no-ops where nothing changed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


class StageFailed(RuntimeError):
    pass


def repro(project: Path, *stages: str) -> str:
    """`dvc repro STAGES` in ``project``; the tail of its output in the error if it fails."""
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run([str(dvc if dvc.exists() else "dvc"), "repro", *stages], cwd=project,
                          capture_output=True, text=True)
    print(proc.stdout[-5000:])
    if proc.returncode != 0:
        raise StageFailed(f"dvc repro {' '.join(stages)} failed in {project}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def fetch(source: str, dest: Path, date: str) -> list[Path]:
    """Copy ``<source>/date=<date>/*`` (a local folder or ``s3://bucket/prefix``) to ``dest/date=<date>/``.

    Files already there with the same size are skipped, so a rerun copies nothing."""
    out = dest / f"date={date}"
    out.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    if source.startswith("s3://"):
        import boto3

        bucket, _, prefix = source[5:].partition("/")
        prefix = f"{prefix.rstrip('/')}/date={date}/".lstrip("/")
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = out / Path(obj["Key"]).name
                if not (target.exists() and target.stat().st_size == obj["Size"]):
                    s3.download_file(bucket, obj["Key"], str(target))
                    copied.append(target)
        return copied
    folder = Path(source) / f"date={date}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no drops for {date}")
    for f in sorted(folder.iterdir()):
        target = out / f.name
        if f.is_file() and not (target.exists() and target.stat().st_size == f.stat().st_size):
            shutil.copy2(f, target)
            copied.append(target)
    return copied


def online_store() -> dict[str, str]:
    """The served online store the tasks publish into: $CTXTAG_ONLINE_STORE (sqlite or redis)
    and $CTXTAG_REDIS_URL, as for the CLI."""
    import os

    return {"online": os.environ.get("CTXTAG_ONLINE_STORE", "sqlite"),
            "redis_url": os.environ.get("CTXTAG_REDIS_URL", "localhost:6379")}


class in_project:
    """Run with ``project`` as the working directory (params.yaml paths are relative to it) and
    the acting user recorded for the registry's audit trail; both restored afterwards."""

    def __init__(self, project: Path, actor: str | None = None):
        self.project, self.actor = Path(project), actor

    def __enter__(self):
        import os

        from ctxtag.config import load_params

        self._cwd, self._actor = Path.cwd(), os.environ.get("CTXTAG_ACTOR")
        os.chdir(self.project)
        if self.actor:
            os.environ["CTXTAG_ACTOR"] = self.actor
        return load_params(self.project / "params.yaml")

    def __exit__(self, *exc) -> None:
        import os

        os.chdir(self._cwd)
        if self._actor is None:
            os.environ.pop("CTXTAG_ACTOR", None)
        else:
            os.environ["CTXTAG_ACTOR"] = self._actor
