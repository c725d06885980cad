"""The online store failing under a running API, for real: a Redis of the test's own, frozen
(SIGSTOP), killed (SIGKILL) and restarted empty. Clients get a bounded 503 naming the cause, never
a hang or a bare 500; /ready follows the store."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
import uuid

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ctxtag.config import load_params
from ctxtag.platform.feast_definitions import offline_file
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.publication import publish
from ctxtag.platform.registry import register
from ctxtag.serving.api import create_app
from tests.conftest import closed_port, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")]


@pytest.fixture(scope="module")
def redis_api(dvc_project, context_champion, tmp_path_factory):
    """The pipeline's features published into a Redis of our own, an API in front of it."""
    port = closed_port()
    proc = start_redis(port)
    params = load_params(dvc_project / "params.yaml")
    feast = tmp_path_factory.mktemp("feast")
    for f in (dvc_project / params.paths.feast).glob("*.parquet"):
        shutil.copy(f, feast)
    online = tmp_path_factory.mktemp("online")
    params = dataclasses.replace(params, paths=dataclasses.replace(params.paths, feast=str(feast), online=str(online)),
                                 registry=dataclasses.replace(params.registry, model_name=f"fault-{uuid.uuid4().hex[:6]}",
                                                              context_model_name=context_champion))
    url = f"127.0.0.1:{port}"
    with in_project(dvc_project):
        register(params)
        promote(params, why="store fault test")
        publish(params, online="redis", redis_url=url)      # the served store, on our Redis
    client = TestClient(create_app(params, dvc_project, online="redis", redis_url=url))
    user = str(pd.read_parquet(offline_file(feast, "user_history")).sort_values("n_streams")["user_id"].iloc[-1])
    state = {"proc": proc, "port": port}
    yield client, user, state
    state["proc"].kill()
    state["proc"].wait()


def _timed(c, user):
    body = {"user_id": user, "device": "car", "timestamp": "2026-01-07T08:15:00+01:00"}
    t = time.perf_counter()
    r = c.post("/contexts", json=body)
    return r, time.perf_counter() - t


def test_a_frozen_store_costs_a_bounded_503(redis_api):
    c, user, state = redis_api
    assert _timed(c, user)[0].status_code == 200
    assert c.get("/ready").status_code == 200
    os.kill(state["proc"].pid, signal.SIGSTOP)
    try:
        r, took = _timed(c, user)
        assert r.status_code == 503 and "online store unavailable" in r.json()["detail"], r.text
        assert took < 2.0                                 # 200 ms per try, one retry, not "as long as frozen"
        assert c.get("/ready").status_code == 503
    finally:
        os.kill(state["proc"].pid, signal.SIGCONT)
    assert _timed(c, user)[0].status_code == 200


def test_a_killed_store_then_an_empty_one(redis_api):
    c, user, state = redis_api
    state["proc"].kill()
    state["proc"].wait()
    r, took = _timed(c, user)
    assert r.status_code == 503 and "online store unavailable" in r.json()["detail"] and took < 2.0
    r = c.get("/ready")
    assert r.status_code == 503
    state["proc"] = start_redis(state["port"])                 # back, but empty: nobody is known
    r, _ = _timed(c, user)
    assert r.status_code == 503 and "holds no user features" in r.json()["detail"], r.text
    r = c.get("/ready")
    assert r.status_code == 503 and "holds no user features" in r.json()["detail"]
