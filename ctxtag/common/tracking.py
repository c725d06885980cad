"""MLflow: where runs go (SQLite + local artifacts by default, a server from MLFLOW_TRACKING_URI),
and the one way metrics and parameters are logged, so every run names things alike."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# MLflow accepts letters, digits and _ - . space / in names; '@' (acc@3) and the rest are spelt out
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def setup_mlflow(experiment: str, root: Path = Path(".")) -> str:
    """Point MLflow at the server in MLFLOW_TRACKING_URI, else at ./mlruns.db + ./mlartifacts."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlruns.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None if uri.startswith("http") else (root / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return uri


def metric_name(key: str) -> str:
    return _UNSAFE.sub("_", key.replace("@", "_at_"))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def finite_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flattened numeric leaves with safe names; None, NaN, infinities and non-numbers are left out
    (MLflow rejects or misplots them)."""
    out = {}
    for key, value in flatten(tree, prefix).items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):     # numpy scalars included
            continue
        if math.isfinite(value):
            out[metric_name(key)] = float(value)
    return out


def log_metrics(tree: Mapping[str, Any], prefix: str = "", step: int | None = None) -> None:
    import mlflow

    metrics = finite_metrics(tree, prefix)
    if metrics:
        mlflow.log_metrics(metrics, step=step)


def log_params(tree: Mapping[str, Any], prefix: str = "") -> None:
    import mlflow

    mlflow.log_params({metric_name(k): v for k, v in flatten(tree, prefix).items()})


def start_resumable_run(run_file: Path, fingerprint: str, run_name: str) -> bool:
    """Continue the run recorded in ``run_file`` when it trained the same thing (same fingerprint)
    and still exists, else start a new one; record it. True when resumed."""
    import mlflow

    previous = json.loads(run_file.read_text()) if run_file.exists() else {}
    resume_id = previous.get("run_id") if previous.get("fingerprint") == fingerprint else None
    if resume_id is not None:
        try:                                  # the tracking store may have been reset since
            mlflow.get_run(resume_id)
        except mlflow.exceptions.MlflowException:
            resume_id = None
    mlflow.start_run(run_id=resume_id, run_name=None if resume_id else run_name)
    from ctxtag.common.io import write_json

    write_json({"run_id": mlflow.active_run().info.run_id, "fingerprint": fingerprint}, run_file)
    return resume_id is not None


def recorded_run_id(run_file: Path) -> str | None:
    return json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
