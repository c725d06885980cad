"""Shadow scoring for real: the API with serving.shadow answers with the champions exactly as without
it, while the @challengers score the same requests off the request path; their agreement lands in
the registry (one tag per worker), in `ctxtag audit`, and in the record of the challenger's promotion."""

from __future__ import annotations

import dataclasses
import shutil

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.registry import audit, register, register_context_model
from ctxtag.serving.api import create_app
from tests.conftest import tagger_champion


@pytest.fixture(scope="module")
def project(dvc_project, context_champion, tmp_path_factory):
    """A copy of the session's project: tagger A champion, B (trained without weights) challenger;
    the context champion, and a context model around B as its challenger."""
    proj = tmp_path_factory.mktemp("shadow") / "project"
    shutil.copytree(dvc_project, proj, symlinks=True)
    params = tagger_champion(proj, context_champion, "shadow")
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, loss="none"))
    with in_project(proj):
        tagger_b = register(other, why="shadow test: B")["version"]
        context_b = register_context_model(other, why="shadow test: B")["version"]
    return proj, params, tagger_b, context_b


def _requests(c, proj):
    clips = sorted((proj / "data/raw/audio").glob("*.flac"))[:3]
    users = pd.read_parquet(proj / "data/feast/user_history.parquet").sort_values("n_streams")["user_id"]
    answers = []
    for clip in clips:
        r = c.post("/predict/audio?top=15", files={"file": (clip.name, clip.read_bytes(), "audio/flac")})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    for user in users.drop_duplicates().iloc[-4:]:
        r = c.post("/contexts?top=15", json={"user_id": str(user), "device": "car", "network": "cellular",
                                              "timestamp": "2026-01-07T08:15:00+01:00"})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


@pytest.mark.slow
def test_challengers_shadow_live_requests_and_their_agreement_is_recorded(project):
    proj, params, tagger_b, context_b = project
    plain = dataclasses.replace(params, serving=dataclasses.replace(params.serving, shadow=False))
    with TestClient(create_app(plain, proj)) as c:
        expected = _requests(c, proj)
    shadowed = dataclasses.replace(params, serving=dataclasses.replace(params.serving, shadow=True, shadow_flush_s=0.2))
    with TestClient(create_app(shadowed, proj)) as c:      # shutdown: the shadows write what they scored
        assert _requests(c, proj) == expected              # the champions' answers, as without the shadow
    with in_project(proj):
        tagger, context = audit(params, "tagger"), audit(params, "context")
    figures = tagger["versions"][tagger_b]["shadow"]
    assert figures["requests"] == 3 and figures["workers"] == 1 and figures["dropped"] == figures["errors"] == 0
    assert 0 <= figures["top1_agreement"] <= 1 and 0 <= figures["top3_overlap"] <= 1
    assert figures["mean_abs_diff"] > 0                     # B is another model: its probabilities differ
    assert tagger["versions"]["1"]["shadow"] is None        # the champion is not its own shadow
    assert context["versions"][context_b]["shadow"]["requests"] == 4
    with in_project(proj):
        promote(params, version=tagger_b, force=True, why="shadow test: B")
        event = audit(params, "tagger")["events"][-1]
    assert event["action"] in ("promote", "forced_promote") and event["shadow"] == figures


def _shadow(tmp_path, predict, queue: int = 64):
    from ctxtag.config import Params
    from ctxtag.serving.shadow import Shadow

    params = Params()
    params = dataclasses.replace(params, serving=dataclasses.replace(params.serving, shadow_queue=queue,
                                                                       shadow_flush_s=0.05))
    return Shadow(params, tmp_path, "tagger", "2", predict)      # no registry here: flushes fail, counted on


def test_a_failing_challenger_is_counted_and_a_full_queue_drops_without_waiting(tmp_path):
    import threading
    import time

    import numpy as np

    def broken(_):
        raise RuntimeError("challenger bug")

    shadow = _shadow(tmp_path, broken)
    shadow.submit(None, np.array([0.1, 0.9]))
    shadow.close()
    assert shadow.stats["errors"] == 1 and shadow.stats["requests"] == 0

    gate = threading.Event()
    slow = _shadow(tmp_path, lambda x: gate.wait(30) and np.array([0.9, 0.1]), queue=1)
    started = time.monotonic()
    for _ in range(5):                                  # one scored (blocked), one queued, three dropped
        slow.submit(None, np.array([0.1, 0.9]))
    assert time.monotonic() - started < 1.0             # a request never waits for the shadow
    gate.set()
    slow.close()
    assert slow.stats["dropped"] >= 3 and slow.stats["requests"] + slow.stats["dropped"] == 5
    assert slow.stats["top1_agree"] == 0 and slow.stats["abs_diff"] > 0


def test_agreement_sums_the_workers_tags():
    import json

    from ctxtag.serving.shadow import agreement

    one = {"requests": 3, "top1_agree": 3, "top3_shared": 3.0, "abs_diff": 0.3, "dropped": 0, "errors": 0,
           "since": "2026-01-01T00:00:00+00:00", "until": "2026-01-01T01:00:00+00:00"}
    two = {**one, "requests": 1, "top1_agree": 0, "top3_shared": 1 / 3, "abs_diff": 0.5, "dropped": 2,
           "since": "2025-12-31T00:00:00+00:00"}
    got = agreement({"shadow.a-1": json.dumps(one), "shadow.b-2": json.dumps(two), "loss": "none"})
    assert got["requests"] == 4 and got["workers"] == 2 and got["dropped"] == 2
    assert got["top1_agreement"] == 0.75 and abs(got["mean_abs_diff"] - 0.2) < 1e-12
    assert got["since"] == "2025-12-31T00:00:00+00:00" and agreement({"loss": "none"}) is None

