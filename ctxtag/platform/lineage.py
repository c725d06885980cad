"""What a registered model was made from: the git commit of the code, and the DVC lock hashes of
the stages that produced it (their inputs, parameters and outputs), recorded on the model version
so `ctxtag audit` can answer "which data and code is this champion" long after the workspace moved
on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

TAG = "lineage"               # the model version tag holding the JSON below


def git_state(root: Path) -> dict:
    """{"commit", "dirty"} of the repository at ``root`` (None where there is no git)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if commit is None or dirty is None else bool(dirty)}


def stage_hashes(lock: Path, stages: list[str]) -> dict:
    """Each stage's dependency and output hashes and its parameters, as dvc.lock records them
    (an empty entry for a stage the lock does not hold: not reproduced with DVC)."""
    if not lock.exists():
        return {stage: {} for stage in stages}
    recorded = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})

    def hashes(entries: list[dict] | None) -> dict:
        return {e["path"]: e.get("md5") or e.get("hash") for e in entries or []}

    return {stage: {"deps": hashes(recorded[stage].get("deps")), "outs": hashes(recorded[stage].get("outs")),
                    "params": recorded[stage].get("params", {})} if stage in recorded else {}
            for stage in stages}


def lineage(root: Path, stages: list[str], run_id: str) -> dict:
    return {"git": git_state(root), "mlflow_run": run_id, "dvc": stage_hashes(root / "dvc.lock", stages)}


def as_tag(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
