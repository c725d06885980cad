"""The HTTP API for real (FastAPI TestClient over the ASGI app) on the small pipeline's outputs:
the @champion from the MLflow registry, the Feast online store, the trained user models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ctxtag.config import Params
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.registry import register
from ctxtag.serving.api import create_app
from tests.conftest import tagger_champion


@pytest.fixture(scope="module")
def client(dvc_project, context_champion):
    params = tagger_champion(dvc_project, context_champion, "api-test")
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
    version = c.get("/version").json()        # what answers, as the registry and the files say
    assert version["models"]["tagger"] == ready["champion"] and version["alias"] == "champion"
    # the user models are the context model's @champion parts: one registered version answers both
    context = f"{params.registry.context_model_name}/1"
    assert version["models"]["situational"] == version["models"]["user_aware"] == context
    # the served track features are that version's own (its tagger computed them); the listening
    # embeddings are the embeddings family's champion
    assert version["feature_models"]["track_audio_features"] == context
    assert version["feature_models"]["track_listening_embedding"] == f"{params.registry.embeddings_model_name}/1"
    assert version["features"] == ready["features"] and version["online_store"] == "sqlite"
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
    assert r.json()["model"] == c.get("/version").json()["models"]["situational"]
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
    assert got["model"] == c.get("/version").json()["models"]["user_aware"]
    assert {t["track_id"] for t in got["tracks"]} <= catalogue
    scores = [t["score"] for t in got["tracks"]]
    assert scores == sorted(scores, reverse=True)
    situation = {"user_id": user, "device": "speaker", "network": "wifi", "timestamp": "2026-01-10T23:50:00+01:00"}
    r = c.post("/recommend", json={"user_id": user, "situation": situation, "k": 3})
    predicted = c.post("/contexts", json=situation).json()["contexts"][0]["context"]
    assert r.json()["context_predicted"] and r.json()["context"] == predicted
    assert c.post("/recommend", json={"user_id": user}).status_code == 422
    assert c.post("/recommend", json={"user_id": user, "context": "brunch"}).status_code == 422


@pytest.mark.slow
def test_a_large_catalogue_is_built_once_and_shared(client, tmp_path, monkeypatch):
    """Past exhaustive_max the service ranks in two stages over an index built once per
    publication into serving_cache; the next worker maps that build instead of rebuilding."""
    import numpy as np

    from ctxtag.serving import recommend
    from ctxtag.serving.service import Service

    c, params, project = client
    exhaustive = c.app.state.ctxtag["service"] or (c.get("/ready") and c.app.state.ctxtag["service"])
    small = dataclasses.replace(params, paths=dataclasses.replace(params.paths, serving_cache=tmp_path / "cache"),
                                serving=dataclasses.replace(params.serving, exhaustive_max=10, prototypes=4,
                                                            per_list=40, probes=2))
    first = Service(small, project)
    rec = first.catalogue.tracks
    assert rec.kind.startswith("two-stage") and rec.lists.shape[2] == 40
    assert isinstance(rec.terms, np.memmap) and len(rec) == len(exhaustive.catalogue.tracks)
    builds = [d for d in (tmp_path / "cache").iterdir() if d.is_dir()]
    assert len(builds) == 1 and not builds[0].name.startswith(".")        # no staging folder left
    user = _a_user(project)
    got = first.recommend(user, "sleep", 10)
    u = exhaustive.user_terms(exhaustive.user_features(user))[0]
    ids = exhaustive.catalogue.tracks.ids.to_pylist()
    rows = np.array([ids.index(t) for t in got.names])
    np.testing.assert_allclose(got.scores, exhaustive.catalogue.tracks.probabilities(rows, u)[
        :, params.contexts.index("sleep")], atol=1e-6)
    monkeypatch.setattr(recommend.Recommender, "build", lambda *a, **k: pytest.fail("rebuilt a cached catalogue"))
    assert Service(small, project).recommend(user, "sleep", 10).names == got.names


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


# --- hardening: limits, hostile input, authentication, republished features ----------------------
@pytest.mark.slow
def test_bodies_over_their_limit_get_413_before_they_are_read(client):
    c, params, project = client
    big = b"x" * (params.serving.max_body_kb * 1024 + 1)
    r = c.post("/contexts", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():                                     # no Content-Length: counted as it streams
        for _ in range(params.serving.max_body_kb + 2):
            yield b" " * 1024
    r = c.post("/contexts", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = c.post("/predict/audio", headers={"content-length": str(params.serving.max_upload_mb * 2**20 + 2**20),
                                          "content-type": "multipart/form-data; boundary=x"}, content=b"--x--")
    assert r.status_code == 413


@pytest.mark.slow
def test_a_long_field_is_not_echoed_whole(client):
    c, _, _ = client
    r = c.post("/contexts", json={"user_id": "u" * 50_000, "device": "car", "timestamp": "2026-01-07T08:15:00+01:00"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "user_id"
    assert len(r.content) < 2_000


@pytest.mark.slow
@pytest.mark.parametrize("filename", ["song." + "a" * 300, "so\x00ng.flac", "../../etc/passwd", ""])
def test_hostile_upload_names_get_a_4xx(client, filename):
    c, _, project = client
    clip = sorted((project / "data/raw/audio").glob("*.flac"))[0]
    r = c.post("/predict/audio", files={"file": (filename, clip.read_bytes(), "audio/flac")})
    assert r.status_code in (200, 415, 422), r.text
    if r.status_code == 200:
        assert len(r.json()["file"]) < 200


@pytest.mark.slow
def test_request_models_answer_any_json_without_a_500(client):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    c, params, project = client
    user = _a_user(project)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                        st.sampled_from([user, "car", "wifi", "sleep", "2026-01-07T08:15:00+01:00",
                                         "3000-01-01T00:00:00+00:00", "0001-01-01T00:00:00+00:00",
                                         "2262-04-12T00:00:00+00:00", "NaN", "Infinity", "1e308"]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=10), inner, max_size=3), max_leaves=6)
    fields = st.sampled_from(["user_id", "device", "network", "timestamp", "age", "gender", "context", "k",
                              "situation", "cold_start"])
    bodies = st.dictionaries(fields, values, max_size=7)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(["/contexts", "/recommend"]), body=bodies)
    def never_500(route, body):
        # json.dumps writes NaN/Infinity as clients that send them do (httpx's json= refuses them)
        r = c.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code < 500, (route, body, r.text)

    never_500()
    # NaN and Infinity as JSON numbers (not valid JSON, but clients send them)
    r = c.post("/contexts", content=b'{"user_id": "u", "device": "car", "timestamp": "2026-01-07T08:15:00+01:00", '
                                    b'"age": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 422


@pytest.mark.slow
def test_api_keys_and_rate_limit(client, monkeypatch):
    c, params, project = client
    monkeypatch.setenv(params.serving.api_keys_env, "k1, k2")
    limited = dataclasses.replace(params, serving=dataclasses.replace(params.serving, rate_per_s=0.01, burst=3))
    secured = TestClient(create_app(limited, project, service=c.app.state.ctxtag["service"]))
    body = {"user_id": _a_user(project), "device": "car", "timestamp": "2026-01-07T08:15:00+01:00"}
    assert secured.get("/health").status_code == 200                  # probes stay open
    assert secured.post("/contexts", json=body).status_code == 401
    assert secured.post("/contexts", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    codes = [secured.post("/contexts", json=body, headers={"Authorization": "Bearer k1"}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert secured.post("/contexts", json=body, headers={"Authorization": "Bearer k2"}).status_code == 200


@pytest.mark.slow
def test_republished_features_are_served_without_a_restart(client):
    from ctxtag.platform.feature_store import mark_published

    c, params, project = client
    service = c.app.state.ctxtag["service"] or (c.get("/ready") and c.app.state.ctxtag["service"])
    before = c.get("/ready").json()["features"]
    service.params = dataclasses.replace(params, serving=dataclasses.replace(params.serving, reload_s=0.0))
    stamp = project / params.paths.online / "published.json"
    kept = stamp.read_bytes()                         # restored: the other tests serve it
    try:
        fields = {k: v for k, v in json.loads(kept).items() if k not in ("version", "published_at", "tracks")}
        version = mark_published(project / params.paths.online, len(service.catalogue.tracks), **fields)
        ready = c.get("/ready").json()
        assert ready["features"] == version != before
        r = c.post("/recommend", json={"user_id": _a_user(project), "context": "sleep", "k": 3})
        assert r.json()["features"] == version
    finally:
        service.params = params
        stamp.write_bytes(kept)


@pytest.mark.slow
def test_a_promotion_and_a_rollback_change_what_is_served(client):
    """Champion A answers; B force-promoted: the API answers with B and says so, without a restart;
    rolled back: A's answers again, to the last digit. A request sees one set of models."""
    _, params, project = client
    params = dataclasses.replace(params, serving=dataclasses.replace(params.serving, reload_s=0.1))
    with TestClient(create_app(params, project)) as c:           # shutdown closes the service: no watcher left
        _promote_and_roll_back(c, params, project)


def _promote_and_roll_back(c, params, project) -> None:
    import time

    from ctxtag.platform.promotion import rollback

    clip = sorted((project / "data/raw/audio").glob("*.flac"))[0]
    name = params.registry.model_name

    def answer() -> tuple[str, dict]:
        r = c.post("/predict/audio?top=15", files={"file": (clip.name, clip.read_bytes(), "audio/flac")})
        assert r.status_code == 200, r.text
        return r.json()["model"], {x["context"]: x["probability"] for x in r.json()["contexts"]}

    def served(version: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if c.get("/version").json()["models"]["tagger"] == version:
                return
            time.sleep(0.1)
        pytest.fail(f"the API did not move to {version} within {timeout_s} s")

    a = answer()
    assert a[0] == f"{name}/1"
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, loss="none"))   # another run
    with in_project(project):
        b = register(other, why="api test: model B")
        promote(other, version=b["version"], force=True, why="api test: serve B")
    served(f"{name}/{b['version']}")
    model, probs = answer()
    assert model == f"{name}/{b['version']}" != a[0] and probs != a[1]
    with in_project(project):
        rollback(params, why="api test: back to A")
    served(f"{name}/1")
    assert answer() == a
