"""Another team, with only Feast installed, reads the served feature store from feature_repo/:
the SDK and `feast serve` answer from the one registry `ctxtag publish` wrote, the definitions load
without ctxtag, and `feast apply` is refused instead of switching what is served."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from ctxtag.common.io import stop_process_group
from tests.conftest import serve_feast

ROOT = Path(__file__).resolve().parents[2]

READ = """
import json, runpy, sys
from feast import FeatureStore
for banned in ("ctxtag", "torch"):
    try:
        __import__(banned)
        sys.exit(f"{banned} is importable: not a Feast-only environment")
    except ModuleNotFoundError:
        pass
store = FeatureStore(repo_path=".")
got = store.get_online_features(features=store.get_feature_service("situational_model"),
                                entity_rows=[{"user_id": sys.argv[1]}, {"user_id": "nobody"}]).to_dict()
defined = runpy.run_path("definitions.py")
print(json.dumps({"n_streams": got["n_streams"],
                  "registry": sorted(s.name for s in store.list_feature_services()),
                  "defined": sorted(v.name for v in defined.values() if type(v).__name__ == "FeatureService")}))
"""


@pytest.fixture(scope="module")
def feast_only(tmp_path_factory) -> Path:
    """A virtual environment holding Feast (the project's pinned version) and its dependencies only."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed")
    env = tmp_path_factory.mktemp("feast-only") / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env)], check=True, timeout=120)
    pins = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("feast")]
    subprocess.run([uv, "pip", "install", "-q", "--python", str(env / "bin/python"),
                    "--constraint", str(ROOT / "requirements.lock"), *(pins or ["feast[redis]"]), "redis"],
                   check=True, timeout=600)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_feast_only_environment_reads_the_published_store(dvc_project, context_champion, feast_only):
    repo = dvc_project / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, dirs_exist_ok=True)
    registry = dvc_project / "data/online/registry-sqlite.db"      # `ctxtag publish` (the champion's fixture)
    before = registry.read_bytes()
    history = pd.read_parquet(dvc_project / "data/feast/user_history.parquet")
    user = str(history.sort_values("event_timestamp")["user_id"].iloc[-1])
    latest = int(history[history["user_id"] == user].sort_values("event_timestamp")["n_streams"].iloc[-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CTXTAG"))}
    python = str(feast_only / "bin/python")

    out = subprocess.run([python, "-c", READ, user], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n_streams"] == [latest, None]
    assert got["registry"] == got["defined"] and "situational_model" in got["registry"]

    refused = subprocess.run([str(feast_only / "bin/feast"), "apply"], cwd=repo, env=env, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode != 0 and "ctxtag publish" in refused.stdout + refused.stderr
    assert registry.read_bytes() == before

    port = _port()
    server = serve_feast(feast_only / "bin/feast", repo, port, env)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/get-online-features", timeout=10,
                       json={"feature_service": "situational_model", "entities": {"user_id": [user]}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][body["metadata"]["feature_names"].index("n_streams")]["values"] == [latest]
    finally:
        stop_process_group(server)
    assert registry.read_bytes() == before
