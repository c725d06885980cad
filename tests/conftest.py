"""Shared fixtures: the real data under ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# MLflow's telemetry thread (started when mlflow is imported) sets and unsets an environment
# variable while requests reads os.environ: now and then an MLflow call fails with KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID'. Tests send no telemetry (set before anything imports mlflow).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
SHARED = ROOT.parent / "shared" / "data"
from ctxtag.vocabulary import CONTEXTS  # noqa: E402  (one owner of the vocabulary)


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path} (../shared is only on developer and CI machines)")
    return path


@pytest.fixture(autouse=True)
def _tracking_uri_stays_in_its_test(monkeypatch):
    """mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, where setup_mlflow
    reads a user's server: one test's local store must not become every later test's "server"."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", "unset"))
    if os.environ["MLFLOW_TRACKING_URI"] == "unset":
        monkeypatch.delenv("MLFLOW_TRACKING_URI")          # restored as unset after the test


@pytest.fixture
def contexts() -> tuple[str, ...]:
    return CONTEXTS


# --- a real DVC project on a small generated world, shared by the pipeline, registry and DAG tests
# the small world (params.small.yaml, shared with the production stack): the whole pipeline in minutes
SMALL = yaml.safe_load((ROOT / "params.small.yaml").read_text())


def tool_env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)                     # the embedded default: ./mlruns.db
    return env


def run_tool(cwd: Path, tool: str, *args: str, ok: bool = True, timeout_s: float = 900) -> str:
    """Run a console script of this venv in ``cwd``; with ok, a non-zero exit fails the test."""
    proc = subprocess.run([str(Path(sys.executable).parent / tool), *args], cwd=cwd, env=tool_env(),
                          capture_output=True, text=True, timeout=timeout_s)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout if ok else proc


def dvc(cwd: Path, *args: str) -> str:
    return run_tool(cwd, "dvc", *args)


@pytest.fixture(scope="session")
def dvc_project(tmp_path_factory) -> Path:
    """`dvc repro` of the whole pipeline, once per test run, and a copy of it for each pytest-xdist
    worker (`make test` runs two): the first worker to need it builds it under a file lock in the
    run's shared folder while the other waits, then each works on its own copy, so tests that
    change the project (and restore it) never meet another worker's. A failed build is reported
    to every worker, not built again."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built, done, failed = shared / "pipeline", shared / "pipeline.built", shared / "pipeline.failed"
    with open(shared / "pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"the shared pipeline project failed to build: {failed.read_text()[-3000:]}")
        if not done.exists():
            shutil.rmtree(built, ignore_errors=True)
            try:
                _build_project(built)
            except BaseException as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}")
                raise
            done.touch()
    proj = tmp_path_factory.mktemp("proj")
    shutil.copytree(built, proj, symlinks=True, dirs_exist_ok=True)     # relocatable (test_relocation)
    return proj


def _build_project(proj: Path) -> None:
    proj.mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", proj)
    shutil.copy(ROOT / ".dvcignore", proj)                 # bytecode in ctxtag/ is not a code change
    (proj / "ctxtag").symlink_to(ROOT / "ctxtag")          # the stages' code deps
    (proj / "scripts").symlink_to(ROOT / "scripts")        # scripts/ctxtag, what every cmd runs
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(proj, "init", "--no-scm", "-q")
    shutil.copytree(ROOT / ".dvc/plots", proj / ".dvc/plots")    # the project's plot templates
    # the whole pipeline: ~3-9 min on 2 cores, bounded at 25 min whatever the machine's load
    run_tool(proj, "dvc", "repro", timeout_s=1500)


@pytest.fixture(scope="session")
def context_champion(dvc_project) -> str:
    """The name of a context model (the user models the API serves) registered from the session's
    project and promoted through its gate, once: the API tests register taggers of their own and
    serve this beside them (``registry.context_model_name``)."""
    import dataclasses
    import uuid

    from ctxtag.config import load_params
    from ctxtag.platform.orchestration import in_project
    from ctxtag.platform.promotion import promote
    from ctxtag.platform.publication import publish
    from ctxtag.platform.registry import register_context_model, register_embeddings

    params = load_params(dvc_project / "params.yaml")
    name = f"served-context-{uuid.uuid4().hex[:6]}"
    params = dataclasses.replace(params, registry=dataclasses.replace(params.registry, context_model_name=name))
    with in_project(dvc_project):
        register_context_model(params, why="served by the API tests")
        assert promote(params, family="context", why="served by the API tests")["promoted"]
        # the listening embeddings under the project's own name (registry.embeddings_model_name)
        register_embeddings(params, why="served by the API tests")
        promote(params, family="embeddings", why="served by the API tests")
        publish(params)                       # their features into the served store
    return name


def tagger_champion(project: Path, context_model: str, prefix: str):
    """``project``'s params naming a tagger of the caller's own (``prefix``-xxxxxx, its train.loss
    run registered and promoted through the gate) beside the context model ``context_model``:
    what one test promotes or rolls back is no other test's."""
    import dataclasses
    import uuid

    from ctxtag.config import load_params
    from ctxtag.platform.orchestration import in_project
    from ctxtag.platform.promotion import promote
    from ctxtag.platform.registry import register

    params = load_params(project / "params.yaml")
    params = dataclasses.replace(params, registry=dataclasses.replace(
        params.registry, model_name=f"{prefix}-{uuid.uuid4().hex[:6]}", context_model_name=context_model))
    with in_project(project):
        register(params)
        promote(params, why=f"{prefix} test")
    return params


# --- MLflow: a clean environment, a closed port, a real tracking server ---------------------------
@pytest.fixture
def mlflow_env(monkeypatch):
    """No MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID (mlflow.set_tracking_uri and set_experiment
    write them into os.environ) nor HTTP bounds when the test starts; whatever it sets is undone."""
    from ctxtag.common.tracking import HTTP_DEFAULTS

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", *HTTP_DEFAULTS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def closed_port() -> int:
    """A local port nothing listens on (bound once by the OS, then released): free for a server
    the test starts, or closed for a test of a server that is down."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, timeout_s: float = 10.0) -> subprocess.Popen:
    """A private redis-server on 127.0.0.1:``port`` (no persistence), returned once it accepts."""
    import socket
    import time

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.fixture(scope="session")
def redis_url():
    """The Redis the Feast tests use: ``$CTXTAG_TEST_REDIS_URL`` when given (host:port), else one
    of the suite's own on a free port, stopped at the end (no server to start by hand)."""
    given = os.environ.get("CTXTAG_TEST_REDIS_URL")
    if given:
        yield given
        return
    port = closed_port()
    proc = start_redis(port)
    yield f"127.0.0.1:{port}"
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def postgres_url():
    """A database of its own, dropped at the end, on the PostgreSQL the machine runs (a Feast SQL
    registry's home in production): ``$CTXTAG_TEST_POSTGRES`` (a SQLAlchemy URL of a server's
    maintenance database) or this machine's 127.0.0.1:5432. Skipped, with the reason, where no
    server answers."""
    import uuid

    import sqlalchemy as sa

    server = os.environ.get("CTXTAG_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"ctxtag_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {server}: {exc.orig}")
    yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def serve_feast(feast: Path, repo: Path, port: int, env: dict | None = None, timeout_s: float = 120.0):
    """`feast serve` of ``repo`` on 127.0.0.1:``port``, returned once /health answers (its output
    in the failure otherwise). The caller terminates it."""
    import subprocess
    import time

    import httpx

    from ctxtag.common.io import stop_process_group

    server = subprocess.Popen([str(feast), "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop_process_group(server, 0)
            raise AssertionError(f"feast serve did not come up in {timeout_s:.0f} s: "
                                 f"{server.stdout.read().decode()[-2000:]}")
        time.sleep(0.5)


class MlflowServer:
    """`mlflow server` on a free local port with a SQLite store (``db``) and local artifacts,
    started in its own process group; ``kill()`` ends it with SIGKILL, as a crash would."""

    def __init__(self, folder: Path, port: int | None = None, timeout_s: float = 120.0):
        import signal
        import time
        import urllib.request

        folder.mkdir(parents=True, exist_ok=True)
        self.db, port = folder / "server.db", port or closed_port()
        self.port = port
        self.uri, self._signal = f"http://127.0.0.1:{port}", signal.SIGKILL
        self.log = folder / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"MLFLOW_DISABLE_TELEMETRY": "true"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.db}",
                 "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mlflow server did not come up in {timeout_s:.0f} s (exit {self.proc.returncode}): "
                                   + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.25)

    def kill(self) -> None:
        import contextlib

        with contextlib.suppress(ProcessLookupError):   # the server's own group: its workers too
            os.killpg(self.proc.pid, self._signal)
        self.proc.wait(timeout=30)


# --- the data-plane engines: every transformation of ctxtag.listening runs on both
@pytest.fixture(scope="session")
def spark_engine():
    """One local Spark session for the test run (a JVM start costs seconds)."""
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (java not on PATH)")
    from ctxtag.listening.engine import Spark

    engine = Spark(master="local[2]", conf={"spark.sql.shuffle.partitions": "2",
                                            "spark.default.parallelism": "2"})
    yield engine
    engine.close()


@pytest.fixture(params=["duckdb", "spark"])
def engine(request):
    """Each data-plane engine in turn."""
    if request.param == "spark":
        return request.getfixturevalue("spark_engine")
    from ctxtag.listening.engine import DuckDB

    duck = DuckDB(memory_limit="1GB")
    request.addfinalizer(duck.close)
    return duck
