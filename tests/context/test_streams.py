"""Labelled streams joined with point-in-time Feast features: no leak from the stream's own day."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from ctxtag.config import Params
from ctxtag.context.features import blocks, targets
from ctxtag.context.streams import labelled, with_features
from ctxtag.listening.history_embedding import fit_item_projection
from ctxtag.listening.snapshots import daily_snapshots
from ctxtag.platform.feature_store import open_store, publish
from ctxtag.tagger.inference import track_frame

PARAMS = Params()


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    rng = np.random.default_rng(4)
    n = 400
    ev = pd.DataFrame({
        "user_id": rng.choice(["u1", "u2"], n), "track_id": rng.choice(["t1", "t2", "t9"], n),
        "event_timestamp": pd.Timestamp("2026-01-05T00:00:00Z") + pd.to_timedelta(rng.integers(0, 6 * 86400, n), "s"),
        "utc_offset_min": pd.array(rng.choice([0, 120, -300], n), dtype="Int64"),
        "device": rng.choice(list(PARAMS.logs.devices), n), "network": rng.choice(list(PARAMS.logs.networks), n),
        "age": 30.0, "gender": "f",
        "context": np.where(rng.random(n) < 0.4, rng.choice(["car", "sleep", "not-a-context"], n), None),
    }).sort_values("event_timestamp").reset_index(drop=True)
    labels = pd.DataFrame(np.eye(2, len(PARAMS.contexts), dtype=int), columns=list(PARAMS.contexts),
                          index=pd.Index(["t1", "t2"], name="track_id"))
    history, device_time = daily_snapshots(ev, labels, pd.Series({"t1": "x", "t2": "y"}), PARAMS.contexts,
                                           PARAMS.logs.devices, PARAMS.logs.networks,
                                           fit_item_projection(ev["user_id"], ev["track_id"], 4, 0))
    tracks = track_frame(["t1", "t2"], np.full((2, 15), 0.3, np.float32), np.ones((2, 256), np.float32),
                         "cnn-test", pd.Timestamp("2026-03-01T00:00:00Z"))    # computed after every stream
    tmp = tmp_path_factory.mktemp("feast")
    store = open_store(tmp, "sqlite", project=f"ctxtagstreams{uuid.uuid4().hex[:6]}")
    publish(store, PARAMS, tmp, history, device_time, tracks)
    streams = labelled(ev, PARAMS.contexts)
    return ev, streams, with_features(store, streams, tracks)


def test_only_streams_with_a_known_context_are_examples(joined):
    ev, streams, _ = joined
    assert len(streams) == ev["context"].isin(["car", "sleep"]).sum()
    assert set(streams["context"]) == {"car", "sleep"}


def test_stream_time_features_are_local_and_cyclic(joined):
    ev, streams, _ = joined
    row = ev[ev["context"].isin(["car", "sleep"])].iloc[0]
    local = row["event_timestamp"] + pd.Timedelta(minutes=int(row["utc_offset_min"]))
    hour = local.hour + local.minute / 60
    assert np.isclose(streams["stream_hour_sin"].iloc[0], np.sin(2 * np.pi * hour / 24))
    assert np.isclose(streams["stream_weekday_cos"].iloc[0], np.cos(2 * np.pi * local.weekday() / 7))


def test_user_features_come_from_before_the_streams_day(joined):
    ev, _, frame = joined
    assert len(frame) == len(joined[1])                        # no stream lost in the joins
    for r in frame.sample(40, random_state=0).itertuples():
        day = r.event_timestamp.floor("D")
        before = int(((ev["user_id"] == r.user_id) & (ev["event_timestamp"] < day)).sum())
        if before == 0:
            assert not r.has_history and pd.isna(r.n_streams)
        else:
            assert r.n_streams == before                       # the stream itself is not in it


def test_track_features_join_although_computed_later(joined):
    _, _, frame = joined
    assert frame.loc[frame["track_id"] != "t9", "has_audio"].all()
    assert not frame.loc[frame["track_id"] == "t9", "has_audio"].any()


def test_blocks_fill_what_is_missing_without_dropping_streams(joined):
    _, _, frame = joined
    x = blocks(frame, PARAMS.contexts, PARAMS.logs.devices, PARAMS.logs.networks, PARAMS.logs.genders, 4)
    assert {k: v.shape[0] for k, v in x.items()} == dict.fromkeys(x, len(frame))
    assert all(np.isfinite(v).all() for v in x.values())
    assert x["audio"].shape[1] == 256 and x["audio_probs"].shape[1] == len(PARAMS.contexts)
    y = targets(frame, PARAMS.contexts)
    assert set(y) == {PARAMS.contexts.index("car"), PARAMS.contexts.index("sleep")}
