"""Feast on the file offline store with SQLite and with a real Redis on localhost."""

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


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, snapshots):
    _, history, device_time, tracks = snapshots
    project = f"ctxtagtest{uuid.uuid4().hex[:8]}"            # keys of this run only, removed after
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "unused"
    fs = open_store(tmp_path, request.param, redis_url=url, project=project)
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
