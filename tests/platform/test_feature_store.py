"""Feast on the file offline store with SQLite, with a real Redis on localhost, and with Redis and
a SQL registry in a real PostgreSQL (the production stack's)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from ctxtag.config import Params
from ctxtag.listening.history_embedding import fit_item_projection
from ctxtag.listening.snapshots import daily_snapshots
from ctxtag.platform.feature_store import historical, open_store, publish
from ctxtag.tagger.inference import track_frame

PARAMS = Params()


def _events(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-05T00:00:00Z")
    return pd.DataFrame({
        "user_id": rng.choice(["u1", "u2", "u3"], n),
        "track_id": rng.choice(["t1", "t2", "t3"], n),
        "event_timestamp": start + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
        "utc_offset_min": pd.array(rng.choice([0, 60], n), dtype="Int64"),
        "device": rng.choice(list(PARAMS.logs.devices), n),
        "network": rng.choice(list(PARAMS.logs.networks), n),
        "context": None,
    }).sort_values("event_timestamp").reset_index(drop=True)


@pytest.fixture(scope="module")
def snapshots():
    ev = _events()
    labels = pd.DataFrame(np.eye(3, len(PARAMS.contexts), dtype=int), columns=list(PARAMS.contexts),
                          index=pd.Index(["t1", "t2", "t3"], name="track_id"))
    artists = pd.Series({"t1": "x", "t2": "y", "t3": "z"})
    tracks = track_frame(["t1", "t2", "t3"], rng_probs(), np.arange(3 * 256, dtype=np.float32).reshape(3, 256),
                         "cnn-test", pd.Timestamp("2026-02-01T00:00:00Z"))
    return ev, *daily_snapshots(ev, labels, artists, PARAMS.contexts, PARAMS.logs.devices, PARAMS.logs.networks,
                                 fit_item_projection(ev["user_id"], ev["track_id"], PARAMS.user_models.history_dim, 0)), tracks


def rng_probs() -> np.ndarray:
    return np.random.default_rng(7).random((3, len(PARAMS.contexts))).astype(np.float32)


@pytest.fixture(params=["sqlite", "redis", "redis+postgres"])
def store(request, tmp_path, snapshots):
    _, history, device_time, tracks = snapshots
    project = f"ctxtagtest{uuid.uuid4().hex[:8]}"            # keys of this run only, removed after
    online, _, registry = request.param.partition("+")
    url = request.getfixturevalue("redis_url") if online == "redis" else "unused"
    registry = request.getfixturevalue("postgres_url") if registry else None
    fs = open_store(tmp_path, online, redis_url=url, project=project, registry=registry)
    stats = publish(fs, PARAMS, tmp_path, history, device_time, tracks, chunk_days=5)
    assert stats["materialize_chunks"] >= 4
    yield fs
    fs.teardown()


def test_online_lookup_serves_the_latest_snapshot(store, snapshots):
    _, history, device_time, _ = snapshots
    got = store.get_online_features(
        features=store.get_feature_service("situational_model"),
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "ghost"}]).to_dict()
    last = history.sort_values("event_timestamp").groupby("user_id").last()
    assert got["n_streams"][:2] == [int(last.loc["u1", "n_streams"]), int(last.loc["u2", "n_streams"])]
    assert got["n_streams"][2] is None
    last_dt = device_time.sort_values("event_timestamp").groupby("user_id").last()
    np.testing.assert_allclose(got["hour_dist"][0], last_dt.loc["u1", "hour_dist"], rtol=1e-6)
    assert got["top_artists"][0] == list(last.loc["u1", "top_artists"])


def test_the_request_path_reader_returns_what_the_sdk_returns(store):
    """OnlineReader (serving's lookup) is the SDK's get_online_features, column for column, for
    known users, an unknown one and a repeated one, on both online stores."""
    from ctxtag.platform.feature_store import OnlineReader

    reader = OnlineReader(store, ["user_listening_history", "user_device_time_profile"], "user_id")
    ids = ["u1", "ghost", "u3", "u1"]
    expect = store.get_online_features(features=reader.refs(), entity_rows=[{"user_id": i} for i in ids]).to_dict()
    got = reader.read(ids)
    assert got.keys() == expect.keys() and len(got) > 40
    for column, values in expect.items():
        assert got[column] == values, column
    assert got["n_streams"][1] is None and got["n_streams"][0] is not None


def test_training_rows_are_point_in_time_correct_and_none_is_lost(store, snapshots):
    ev = snapshots[0]
    rng = np.random.default_rng(1)
    times = pd.Timestamp("2026-01-04T00:00:00Z") + pd.to_timedelta(rng.integers(0, 25 * 86400, 40), unit="s")
    entity_df = pd.DataFrame({"user_id": rng.choice(["u1", "u2", "u3", "ghost"], 40), "event_timestamp": times})
    entity_df = pd.concat([entity_df, entity_df.iloc[:3]], ignore_index=True)    # repeated rows too
    rows = historical(store, entity_df, ["user_listening_history:n_streams"])
    assert len(rows) == len(entity_df)
    for r in rows.itertuples(index=False):
        mine = ev[ev["user_id"] == r.user_id]["event_timestamp"]
        snapshot = r.event_timestamp.floor("D")                  # the latest snapshot <= t
        expected = int((mine < snapshot).sum())
        if expected == 0:
            assert pd.isna(r.n_streams), r
        else:
            assert r.n_streams == expected, r                     # nothing from after t leaks in
            assert r.n_streams <= int((mine < r.event_timestamp).sum())


def test_track_features_are_served_with_the_user_features(store, snapshots):
    got = store.get_online_features(
        features=store.get_feature_service("joint_model"),
        entity_rows=[{"user_id": "u1", "track_id": "t2"}]).to_dict()
    np.testing.assert_allclose(got["context_probs"][0], rng_probs()[1], rtol=1e-6)
    assert len(got["audio_embedding"][0]) == 256 and got["audio_embedding"][0][0] == 256.0
    assert got["tagger"] == ["cnn-test"] and got["n_streams"][0] > 0


def test_a_sql_registry_is_shared_by_services_that_share_no_file(tmp_path, snapshots, redis_url, postgres_url):
    """What one process publishes into the Postgres registry, another process with only a
    configuration (no file of the first: another folder) reads: the same views, the same online
    features through a feature service; no registry file is written anywhere."""
    import json
    import subprocess
    import sys

    import yaml

    _, history, device_time, tracks = snapshots
    project = f"ctxtagtest{uuid.uuid4().hex[:8]}"
    fs = open_store(tmp_path / "publisher", "redis", redis_url=redis_url, project=project, registry=postgres_url)
    publish(fs, PARAMS, tmp_path / "publisher", history, device_time, tracks, chunk_days=5)
    try:
        expect = fs.get_online_features(features=fs.get_feature_service("joint_model"),
                                        entity_rows=[{"user_id": "u1", "track_id": "t2"}]).to_dict()
        reader = tmp_path / "reader"
        reader.mkdir()
        # another team's plain feature_store.yaml: the registry's URL and the Redis, nothing of ours
        (reader / "feature_store.yaml").write_text(yaml.safe_dump(
            {"project": project, "provider": "local", "registry": {"registry_type": "sql", "path": postgres_url},
             "online_store": {"type": "redis", "connection_string": redis_url},
             "offline_store": {"type": "file"}, "entity_key_serialization_version": 3}))
        code = ("import json, sys; from feast import FeatureStore; s = FeatureStore(repo_path=sys.argv[1]); "
                "print(json.dumps({'views': sorted(v.name for v in s.list_feature_views()), 'row': "
                "s.get_online_features(features=s.get_feature_service('joint_model'), "
                "entity_rows=[{'user_id': 'u1', 'track_id': 't2'}]).to_dict()}))")
        out = subprocess.run([sys.executable, "-c", code, str(reader)], capture_output=True, text=True,
                             timeout=300, check=True).stdout
        got = json.loads(out.strip().splitlines()[-1])
        assert got["views"] == sorted(v.name for v in fs.list_feature_views())
        assert got["row"]["n_streams"] == expect["n_streams"] and got["row"]["n_streams"][0] is not None
        np.testing.assert_allclose(got["row"]["context_probs"], expect["context_probs"], rtol=1e-6)
        assert not list(tmp_path.rglob("registry*.db"))
    finally:
        fs.teardown()


def test_a_registry_url_must_name_its_driver_and_its_password_is_never_shown():
    from ctxtag.platform.feature_store import hide_password, sql_registry

    with pytest.raises(ValueError, match="driver") as err:
        sql_registry("postgres://u:s3cret@db/feast")
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in hide_password("postgresql+psycopg2://u:s3cret@db:5432/feast")
    cfg = sql_registry("postgresql+psycopg2://u@db/feast", timeout_ms=3000)
    assert cfg["sqlalchemy_config_kwargs"]["connect_args"] == {"connect_timeout": 3}
    assert cfg["serve_features_while_materializing"] is True


def test_a_client_reads_a_service_by_its_references_across_a_switch(tmp_path):
    """Why the README tells clients to pass a feature service's references, not the service: given
    the object, Feast 0.67 fetches the service from the registry again, and a file registry
    whose mtime moved is re-read, so a read straddling a switch names one version's features and
    the other's views and fails. By references it reads the version it resolved (its view stays)."""
    import time

    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.errors import FeatureViewNotFoundException
    from feast.types import Float32

    source = tmp_path / "v.parquet"
    pd.DataFrame({"track_id": ["t1"], "v": [0.5], "event_timestamp": [pd.Timestamp("2026-01-05", tz="UTC")]}) \
        .assign(v=lambda f: f["v"].astype("float32")).to_parquet(source)
    track = Entity(name="track", join_keys=["track_id"], value_type=ValueType.STRING)
    views = [FeatureView(name=f"tracks_{k}", entities=[track], schema=[Field(name="v", dtype=Float32)],
                         source=FileSource(path=str(source), timestamp_field="event_timestamp")) for k in (1, 2)]
    publisher = open_store(tmp_path / "store")
    publisher.apply([track, *views, FeatureService(name="svc", features=[views[0]])])
    client = open_store(tmp_path / "store")
    client.refresh_registry()
    service = client.get_feature_service("svc", allow_cache=True)
    time.sleep(0.05)                                     # past the file clock's tick: the mtime moves
    publisher.apply([FeatureService(name="svc", features=[views[1]])])      # the switch
    rows = [{"track_id": "t1"}]
    with pytest.raises(FeatureViewNotFoundException, match="tracks_2 does not exist"):
        client.get_online_features(features=service, entity_rows=rows)
    refs = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features]
    assert refs == ["tracks_1:v"]
    assert set(client.get_online_features(features=refs, entity_rows=rows).to_dict()) == {"track_id", "v"}
