"""`make airflow` (scripts/airflow_standalone.sh) brings up the UI/API on 127.0.0.1 with both DAGs
and the gpu pool; checked over the real REST API, then the process group is stopped."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from ctxtag.common.io import stop_process_group
from tests.conftest import ROOT, closed_port, tool_env


def _get(url: str, token: str | None = None, data: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_standalone_serves_the_dags_on_localhost(tmp_path):
    port = closed_port()
    env = {**tool_env(), "AIRFLOW_HOME": str(tmp_path), "AIRFLOW_PORT": str(port)}
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/airflow_standalone.sh")], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.time() + 240, None
        while time.time() < deadline:
            try:
                health = _get(f"{base}/api/v2/monitor/health")
                if health["scheduler"]["status"] == "healthy" and health["dag_processor"]["status"] == "healthy":
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(3)
        assert health and health["metadatabase"]["status"] == "healthy", health
        password = json.loads((tmp_path / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = _get(f"{base}/auth/token", data={"username": "admin", "password": password})["access_token"]
        dags: set[str] = set()
        while time.time() < deadline and dags != {"ctxtag_ingest", "ctxtag_retrain"}:
            listed = _get(f"{base}/api/v2/dags", token)["dags"]
            dags = {d["dag_id"] for d in listed}
            time.sleep(2)
        assert dags == {"ctxtag_ingest", "ctxtag_retrain"}
        # a developer's checkout: paused until they unpause them, so no stage rewrites its outputs
        assert all(d["is_paused"] for d in listed)
        assert "gpu" in {p["name"] for p in _get(f"{base}/api/v2/pools", token)["pools"]}
    finally:
        stop_process_group(proc)
