"""The HTTP API for real (FastAPI TestClient over the ASGI app) on the small pipeline's outputs:
the @champion from the MLflow registry, the Feast online store, the trained user models."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ctxtag.config import Params, load_params
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.registry import register
from ctxtag.serving.api import create_app


@pytest.fixture(scope="module")
def client(dvc_project):
    params = load_params(dvc_project / "params.yaml")
    params = dataclasses.replace(params, registry=dataclasses.replace(
        params.registry, model_name=f"api-test-{uuid.uuid4().hex[:6]}"))
    with in_project(dvc_project):
        register(params)
        promote(params, why="api test")
    return TestClient(create_app(params, dvc_project)), params, dvc_project


def _a_user(project: Path) -> str:
    hist = pd.read_parquet(project / "data/feast/user_history.parquet")
    return str(hist.sort_values("n_streams")["user_id"].iloc[-1])


@pytest.mark.slow
def test_health_ready_and_openapi(client):
    c, params, _ = client
    assert c.get("/health").json() == {"status": "ok"}
    ready = c.get("/ready").json()
    assert ready["status"] == "ready" and ready["champion"] == f"{params.registry.model_name}/1"
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/predict/audio", "/contexts", "/recommend", "/health", "/ready"} <= set(paths)


@pytest.mark.slow
def test_predict_audio_ranks_every_context_for_an_upload(client):
    c, params, project = client
    clip = sorted((project / "data/raw/audio").glob("*.flac"))[0]
    r = c.post("/predict/audio?top=15", files={"file": (clip.name, clip.read_bytes(), "audio/flac")})
    assert r.status_code == 200, r.text
    got = r.json()["contexts"]
    assert sorted(x["context"] for x in got) == sorted(params.contexts)
    probs = [x["probability"] for x in got]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)


@pytest.mark.slow
def test_bad_uploads_get_clear_4xx(client):
    c, _, _ = client
    r = c.post("/predict/audio", files={"file": ("song.mp3", b"definitely not audio", "audio/mpeg")})
    assert r.status_code == 415 and r.json()["detail"].startswith("song.mp3: ")
    r = c.post("/predict/audio", files={"file": ("empty.wav", b"", "audio/wav")})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


@pytest.mark.slow
def test_contexts_of_a_situation_are_a_distribution(client):
    c, params, project = client
    body = {"user_id": _a_user(project), "device": "car", "network": "cellular",
            "timestamp": "2026-01-07T08:15:00+01:00"}
    r = c.post("/contexts?top=15", json=body)
    assert r.status_code == 200, r.text
    got = r.json()["contexts"]
    assert len(got) == len(params.contexts) and abs(sum(x["probability"] for x in got) - 1) < 1e-3
    # the situation matters: the same user on a speaker at midnight on Saturday is told otherwise
    other = c.post("/contexts?top=15", json={**body, "device": "speaker", "network": "wifi",
                                             "timestamp": "2026-01-10T23:50:00+01:00"}).json()["contexts"]
    assert {x["context"]: x["probability"] for x in got} != {x["context"]: x["probability"] for x in other}


@pytest.mark.slow
@pytest.mark.parametrize("body, field", [
    ({"device": "toaster"}, "device"),
    ({"timestamp": "2026-01-07T08:15:00"}, "timestamp"),          # no UTC offset
    ({"network": "5g"}, "network"),
    ({"age": 300}, "age"),
])
def test_invalid_situations_name_the_field(client, body, field):
    c, _, project = client
    base = {"user_id": _a_user(project), "device": "car", "network": "cellular",
            "timestamp": "2026-01-07T08:15:00+01:00"}
    r = c.post("/contexts", json={**base, **body})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field


@pytest.mark.slow
def test_unknown_user_is_404(client):
    c, _, _ = client
    r = c.post("/contexts", json={"user_id": "nobody", "device": "car", "timestamp": "2026-01-07T08:15:00+01:00"})
    assert r.status_code == 404 and "nobody" in r.json()["detail"]


@pytest.mark.slow
def test_recommend_in_a_chosen_or_predicted_context(client):
    c, _, project = client
    user = _a_user(project)
    catalogue = set(pd.read_csv(project / "data/raw/tracks.csv", dtype=str)["track_id"])
    r = c.post("/recommend", json={"user_id": user, "context": "sleep", "k": 7})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["context"] == "sleep" and not got["context_predicted"] and len(got["tracks"]) == 7
    assert {t["track_id"] for t in got["tracks"]} <= catalogue
    scores = [t["score"] for t in got["tracks"]]
    assert scores == sorted(scores, reverse=True)
    situation = {"user_id": user, "device": "speaker", "network": "wifi", "timestamp": "2026-01-10T23:50:00+01:00"}
    r = c.post("/recommend", json={"user_id": user, "situation": situation, "k": 3})
    predicted = c.post("/contexts", json=situation).json()["contexts"][0]["context"]
    assert r.json()["context_predicted"] and r.json()["context"] == predicted
    assert c.post("/recommend", json={"user_id": user}).status_code == 422
    assert c.post("/recommend", json={"user_id": user, "context": "brunch"}).status_code == 422


def test_not_ready_without_a_pipeline(tmp_path):
    c = TestClient(create_app(Params(), tmp_path))
    assert c.get("/health").status_code == 200
    r = c.get("/ready")
    assert r.status_code == 503 and r.json()["detail"].startswith("not ready: ")


@pytest.mark.slow
def test_cold_start_recommendations_rank_new_releases_by_cosine_similarity(client):
    import numpy as np

    c, _, project = client
    ready = c.get("/ready").json()
    assert ready["listening_embeddings"]["new"]["index"] == "exact"        # a small catalogue
    tracks = pd.read_parquet(project / "data/embeddings/track_embeddings.parquet")
    users = pd.read_parquet(project / "data/embeddings/user_embeddings.parquet").set_index("user_id")
    user = _a_user(project)
    r = c.post("/recommend", json={"user_id": user, "cold_start": True, "k": 5})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["cold_start"] and got["context"] is None and len(got["tracks"]) == 5
    new = tracks[tracks["cold_start"]]
    ae = np.stack(new["listening_embedding"].to_numpy())
    ue = np.asarray(users.loc[user, "listening_embedding"])
    cos = ae @ ue / (np.linalg.norm(ae, axis=1) * np.linalg.norm(ue))
    expect = new["track_id"].to_numpy()[np.argsort(-cos)[:5]]
    assert [t["track_id"] for t in got["tracks"]] == list(expect)
    assert [t["score"] for t in got["tracks"]] == pytest.approx(np.sort(cos)[::-1][:5], abs=1e-4)
    assert c.post("/recommend", json={"user_id": user, "cold_start": True, "context": "gym"}).status_code == 422
    assert c.post("/recommend", json={"user_id": "nobody", "cold_start": True}).status_code == 404
