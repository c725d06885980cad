"""MLflow: where runs go (SQLite + local artifacts by default, a server from MLFLOW_TRACKING_URI),
and the one way metrics and parameters are logged, so every run names things alike."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# MLflow accepts letters, digits and _ - . space / in names; '@' (acc@3) and the rest are spelt out
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


# MLflow's HTTP client tries 8 times with exponential backoff and waits up to 120 s for each
# answer by default: a server that is down stalls a command for minutes. These bound it (3 tries;
# ~3 s against a closed port, at most ~35 s against a host that never answers) unless set already.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 # MLflow 3's usage telemetry phones home (no route here) and its session state
                 # sometimes fails a logging call (KeyError '_MLFLOW_TELEMETRY_SESSION_ID'): off
                 # unless the user turns it on
                 "MLFLOW_DISABLE_TELEMETRY": "true"}


def bound_http_requests() -> None:
    """HTTP_DEFAULTS for whatever the user has not set (MLflow reads them at every request)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def pinned_requirements(*distributions: str) -> list[str]:
    """A logged model's pip requirements: the installed versions of ``distributions``, declared.
    Left to MLflow, they are inferred by loading the model in a subprocess (~4 s a model), and
    miss what the model imports lazily (torch, for the context model). A local label (+cpu) is
    dropped: the same release of another build (CUDA) serves as well."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in distributions]


_LOCAL_STORES: set[str] = set()       # the local stores setup_mlflow pointed MLflow at in this process


def tracking_uri(root: Path = Path(".")) -> str:
    """The store ``setup_mlflow`` points at, without pointing at it (for a client of its own, as
    a background thread needs: set_tracking_uri is process-wide)."""
    db = (root / "mlruns.db").resolve()
    # MLflow copies every set_tracking_uri into MLFLOW_TRACKING_URI: a local store set before
    # (this project's, or in this process another's) is no server setting
    server = os.environ.get("MLFLOW_TRACKING_URI")
    if server in _LOCAL_STORES or server == f"sqlite:///{db}":
        server = None
    return server or f"sqlite:///{db}"


def setup_mlflow(experiment: str, root: Path = Path(".")) -> str:
    """Point MLflow at the server in MLFLOW_TRACKING_URI, else at <root>/mlruns.db + <root>/mlartifacts.

    The local store keeps its artifact locations relative to the project root
    (``mlartifacts/<run>/artifacts``): MLflow resolves them against the working directory, which
    is the project root for every stage (as for params.yaml's paths), so a copied or moved project
    reads and writes its own artifacts; a reader elsewhere joins them to ``root``
    (ctxtag.serving.service). A server's artifact root is the server's business: left as it is."""
    import mlflow

    bound_http_requests()
    db = (root / "mlruns.db").resolve()
    uri = tracking_uri(root)
    server = None if uri == f"sqlite:///{db}" else uri
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None if uri.startswith("http") else (root / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    if not server:
        _LOCAL_STORES.add(uri)
        _relative_artifact_locations(db, root.resolve())
    mlflow.set_experiment(experiment)
    return uri


# where mlruns.db holds artifact locations (runs, logged models and versions inherit the experiment's)
_ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"), ("trace_tags", "value"))


def _relative_artifact_locations(db: Path, root: Path) -> None:
    """Rewrite the artifact locations under ``root`` that mlruns.db holds absolute as paths
    relative to ``root``: MLflow resolves a relative location when it creates an experiment (the
    Default one too), and stores made before this rule hold absolute ones. Writes only then."""
    import sqlite3
    from contextlib import closing

    prefixes = (root.as_uri() + "/", f"{root}/")
    with closing(sqlite3.connect(db, timeout=60)) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        todo = [(t, c, p) for t, c in _ARTIFACT_COLUMNS if t in tables for p in prefixes
                if con.execute(f"SELECT 1 FROM {t} WHERE substr({c}, 1, ?) = ? LIMIT 1", (len(p), p)).fetchone()]
        if not todo:
            return
        con.execute("PRAGMA secure_delete = ON")       # the old values' bytes go too, not just their cells
        with con:                                                          # one transaction
            for table, column, prefix in todo:
                con.execute(f"UPDATE {table} SET {column} = substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                            (len(prefix) + 1, len(prefix), prefix))


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


def end_run(status: str = "FINISHED") -> None:
    import mlflow

    mlflow.end_run(status=status)


def recorded_run_id(run_file: Path) -> str | None:
    return json.loads(run_file.read_text())["run_id"] if run_file.exists() else None


def log_missing_epochs(history: Sequence[Mapping[str, Any]]) -> list[int]:
    """Log each history row's metrics (all but ``epoch``) at step ``epoch`` in the active run,
    leaving out every (metric, epoch) the run holds already; returns the epochs it logged.

    Training logs every new epoch and a resumed checkpoint's whole history through it, so the run
    ends up with each epoch exactly once: also when the process was killed after writing the
    checkpoint and before logging the epoch, and when it resumed from an older checkpoint than the
    epochs it had logged (those are not logged twice)."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    rows = {int(row["epoch"]): finite_metrics({k: v for k, v in row.items() if k != "epoch"}) for row in history}
    logged = {key: {m.step for m in client.get_metric_history(run_id, key)}
              for key in {key for metrics in rows.values() for key in metrics}}
    now = int(time.time() * 1000)
    missing = [Metric(key, value, now, epoch) for epoch, metrics in rows.items()
               for key, value in metrics.items() if epoch not in logged[key]]
    for start in range(0, len(missing), 1000):                # MLflow takes at most 1000 per batch
        client.log_batch(run_id, metrics=missing[start:start + 1000])
    return sorted({m.step for m in missing})


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during (as a traceback shows them), outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


_REQUEST = re.compile(r"API request to (\S+) failed")


def _cause(exc: BaseException) -> str:
    """The innermost error of the chain on one line, and the request MLflow made when it says so:
    'ConnectionRefusedError: [Errno 111] Connection refused (request to http://host:5000/api/...)'."""
    chain = _chain(exc)
    text = " ".join(str(chain[-1]).split())[:300]
    cause = f"{type(chain[-1]).__name__}: {text}" if text else type(chain[-1]).__name__
    request = next((m.group(1) for e in chain if (m := _REQUEST.search(str(e)))), None)
    return f"{cause} (request to {request})" if request else cause


def unreachable(exc: BaseException) -> str | None:
    """'MLflow at <uri> unreachable: <cause>' when ``exc`` is MLflow failing to reach its server
    (refused, dropped or never answered connection, or error answers through all the retries);
    None for any other error."""
    import mlflow
    import requests
    from mlflow.exceptions import MlflowException

    down = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError, ConnectionError, TimeoutError)
    chain = _chain(exc)
    if not (any(isinstance(e, MlflowException) for e in chain) and any(isinstance(e, down) for e in chain)):
        return None
    return f"MLflow at {mlflow.get_tracking_uri()} unreachable: {_cause(exc)}"


class Tracker:
    """MLflow for a stage whose outputs must not depend on it (training, experiments): every MLflow
    call goes through ``call``. The first one that fails (server unreachable or gone, store error)
    prints one warning naming the tracking URI and the cause, and ends the active run as KILLED (a
    resumable training run is continued, and its missing epochs logged, by the next one); from then
    on every call is a no-op returning None, and the stage writes its outputs as usual.
    ``Tracker(None)`` (``log_mlflow: false``) tracks nothing and says nothing."""

    def __init__(self, experiment: str | None, root: Path = Path(".")):
        self.on = experiment is not None
        self.failure: str | None = None
        if self.on:
            self.call(setup_mlflow, experiment, root)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` while tracking is on, else None."""
        if not self.on:
            return None
        import requests
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except (MlflowException, requests.RequestException, OSError) as exc:
            self._give_up(getattr(fn, "__name__", repr(fn)), exc)
            return None

    def _give_up(self, what: str, exc: BaseException) -> None:
        import mlflow

        self.on, self.failure = False, _cause(exc)
        print(f"warning: MLflow tracking at {mlflow.get_tracking_uri()} failed in {what}: {self.failure}; "
              "going on without tracking (outputs are written as usual)", file=sys.stderr, flush=True)
        if mlflow.active_run() is not None:       # not left to MLflow's exit hook (another round of retries)
            with contextlib.suppress(Exception):
                mlflow.end_run(status="KILLED")
