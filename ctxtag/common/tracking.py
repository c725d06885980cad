"""MLflow setup: SQLite + local artifacts by default, a server from MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
from pathlib import Path


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
