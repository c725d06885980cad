"""docker/: no container engine runs here, so validate what can be: the compose file parses into
the stack the design names, every build points at a Dockerfile whose COPY sources exist, and every
command the images and services run exists in the locked environment (checked by running its
--help here, in the same packages the images install from requirements.lock)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool_env

DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_describes_the_production_stack(compose):
    services = compose["services"]
    assert {"postgres", "rabbitmq", "redis", "minio", "mlflow", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "airflow-gpu-worker", "api"} <= set(services)
    env = services["airflow-scheduler"]["environment"]                       # through the x-airflow anchor
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["CTXTAG_ONLINE_STORE"] == "redis" and env["MLFLOW_TRACKING_URI"] == "http://mlflow:${STACK_MLFLOW_PORT}"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("amqp://")
    gpu = services["airflow-gpu-worker"]
    assert gpu["command"][:4] == ["celery", "worker", "--queues", "gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "pools set gpu" in services["airflow-init"]["command"][0]
    for name, svc in services.items():                                       # nothing exposed beyond localhost
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", [])), name


def _settings() -> dict[str, str]:
    lines = (DOCKER / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_and_the_native_stack_read_one_settings_file(compose):
    """docker/stack.env feeds both: compose interpolates every setting (no port, database, bucket or
    credential of its own), and scripts/stack.sh reads every one."""
    settings = _settings()
    text, native = (DOCKER / "compose.yaml").read_text(), (ROOT / "scripts/stack.sh").read_text()
    assert settings and all(k.startswith("STACK_") for k in settings)
    for key, value in settings.items():
        assert "${" + key + "}" in text, f"compose.yaml does not use {key}"
        assert "$" + key in native or "${" + key in native, f"scripts/stack.sh does not use {key}"
        if (value.isdigit() and len(value) >= 4) or (value.startswith("ctxtag") and value != "ctxtag"):   # ports, names
            assert not re.search(rf"(?<![\w$]){re.escape(value)}(?!\w)", text), f"compose.yaml repeats {key}={value}"


def _dockerfiles(compose) -> dict[str, Path]:
    out = {}
    for name, svc in compose["services"].items():
        if "build" in svc:
            context = (DOCKER / svc["build"]["context"]).resolve()
            out[name] = context / svc["build"]["dockerfile"]
    return out


def test_every_build_has_its_dockerfile_and_copy_sources(compose):
    files = _dockerfiles(compose)
    assert {p.name for p in files.values()} == {"Dockerfile.airflow", "Dockerfile.trainer", "Dockerfile.api"}
    for path in set(files.values()):
        assert path.exists(), path
        text = path.read_text()
        assert "requirements.lock" in text and re.search(r"uv pip sync .*requirements\.lock", text.replace("\\\n", " "))
        for line in text.splitlines():
            if line.startswith("COPY "):
                for src in shlex.split(line)[1:-1]:
                    assert (ROOT / src).exists(), f"{path.name}: COPY {src} is missing"


def _commands(compose) -> list[list[str]]:
    """(entrypoint + command) of every service and every image's ENTRYPOINT + CMD, for our images."""
    ours = {"ctxtag/airflow:latest": ["airflow"], "ctxtag/trainer:latest": ["airflow"], "ctxtag/api:latest": ["ctxtag"]}
    cmds = []
    for svc in compose["services"].values():
        if svc.get("image") not in ours:
            continue
        entry = svc.get("entrypoint", ours[svc["image"]])
        cmd = svc.get("command", [])
        if entry[0] in ("/bin/bash", "/bin/sh"):
            for part in cmd[0].split("&&"):
                cmds.append(shlex.split(part.replace("${STACK_GPU_SLOTS}", "1")))
        else:
            cmds.append(list(entry) + list(cmd))
    for path in (DOCKER / "Dockerfile.trainer", DOCKER / "Dockerfile.api"):
        text = path.read_text()
        entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1))
        cmd = yaml.safe_load(re.search(r"^CMD (.*)$", text, re.M).group(1))
        cmds.append(entry + cmd)
    return cmds


@pytest.mark.slow
def test_every_command_the_stack_runs_exists_in_the_locked_environment(compose):
    bin_dir = Path(sys.executable).parent
    seen = set()
    for cmd in _commands(compose):
        # the subcommand path (words before the first option) answers --help
        words = [w for w in cmd[: next((i for i, w in enumerate(cmd) if w.startswith("-")), len(cmd))]]
        if cmd[0] == "airflow" and words[1:2] == ["pools"]:
            words = words[:3]
        key = tuple(words)
        if key in seen:
            continue
        seen.add(key)
        exe = bin_dir / words[0]
        assert exe.exists(), f"{words[0]} is not installed from requirements.lock"
        proc = subprocess.run([str(exe), *words[1:], "--help"], capture_output=True, text=True, timeout=180,
                              env={**tool_env(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
        assert proc.returncode == 0, f"{' '.join(words)} --help: {proc.stderr[-1500:]}"
    assert ("airflow", "celery", "worker") in seen and ("mlflow", "server") in seen and ("ctxtag", "serve") in seen
