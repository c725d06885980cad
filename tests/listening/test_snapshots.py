import numpy as np
import pandas as pd
import pytest

from ctxtag.listening.history_embedding import fit_item_projection
from ctxtag.listening.snapshots import daily_snapshots

CONTEXTS, DEVICES, NETWORKS = ("party", "sleep"), ("phone", "car"), ("wifi", "cellular")


def _events():
    return pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "a"],
        "track_id": ["t1", "t2", "t1", "t2", "t3"],
        "event_timestamp": pd.to_datetime(["2026-01-05T22:30:00Z", "2026-01-05T23:30:00Z", "2026-01-07T08:00:00Z",
                                           "2026-01-05T10:00:00Z", "2026-01-07T09:00:00Z"]),
        "utc_offset_min": pd.array([120, 120, -300, 0, -300], dtype="Int64"),
        "device": ["phone", "car", "car", "phone", "car"],
        "network": ["wifi", "wifi", "cellular", "wifi", "cellular"],
        "context": [None, None, None, "sleep", None],
    })


def _snap():
    labels = pd.DataFrame({"party": [1, 0], "sleep": [0, 1]}, index=pd.Index(["t1", "t2"], name="track_id"))
    artists = pd.Series({"t1": "x", "t2": "y", "t3": "y"})
    ev = _events()
    return daily_snapshots(ev, labels, artists, CONTEXTS, DEVICES, NETWORKS,
                           fit_item_projection(ev["user_id"], ev["track_id"], 2, seed=0))


def test_snapshots_count_only_events_before_their_stamp():
    history, _ = _snap()
    a = history[history["user_id"] == "a"].set_index("event_timestamp")
    assert list(a.index) == list(pd.to_datetime(["2026-01-06T00:00:00Z", "2026-01-08T00:00:00Z"]))
    assert a["n_streams"].tolist() == [2, 4]
    assert a["ctx_count_party"].tolist() == [1, 2] and a["ctx_count_sleep"].tolist() == [1, 1]
    np.testing.assert_allclose(a["ctx_share_party"], [0.5, 0.5])
    assert a["top_artists"].iloc[-1] == ["x", "y"] or a["top_artists"].iloc[-1] == ["y", "x"]
    b = history[history["user_id"] == "b"].iloc[0]
    assert b["ctx_count_sleep"] == 1                    # the explicit context label counts


def test_device_time_profile_uses_local_time():
    _, dt = _snap()
    a = dt[dt["user_id"] == "a"].iloc[0]               # 22:30Z and 23:30Z at +02:00 -> 00:30, 01:30 local
    assert a["hour_dist"][0] == 0.5 and a["hour_dist"][1] == 0.5
    assert a["weekday_dist"][1] == 1.0                  # Tuesday 6 January locally
    assert a["device_share_phone"] == 0.5 and a["network_share_wifi"] == 1.0
    assert np.isclose(a["hour_sin"], np.mean(np.sin(2 * np.pi * np.array([0, 1]) / 24)))


def test_history_embedding_is_the_fold_in_of_the_shares_up_to_the_snapshot():
    ev = _events()
    proj = fit_item_projection(ev["user_id"], ev["track_id"], 2, seed=0)
    history, _ = _snap()
    a = history[history["user_id"] == "a"].reset_index(drop=True)
    # by 2026-01-08 user a streamed t1 twice, t2 and t3 once: shares (.5, .25, .25)
    expected = np.array([0.5, 0.25, 0.25]) @ proj.loc[["t1", "t2", "t3"]].to_numpy()
    np.testing.assert_allclose(a["history_embedding"].iloc[1], expected, rtol=1e-5)
    first = np.array([0.5, 0.5]) @ proj.loc[["t1", "t2"]].to_numpy()       # before 2026-01-06: t1, t2
    np.testing.assert_allclose(a["history_embedding"].iloc[0], first, rtol=1e-5)


def _world(n: int = 3000, users: int = 25, tracks: int = 60, days: int = 9, seed: int = 3) -> tuple:
    rng = np.random.default_rng(seed)
    ev = pd.DataFrame({
        "user_id": [f"u{i}" for i in rng.integers(0, users, n)],
        "track_id": [f"t{i}" for i in rng.integers(0, tracks, n)],
        "event_timestamp": pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(rng.integers(0, days * 86400, n), "s"),
        "utc_offset_min": pd.array(rng.choice([-300, 0, 60, 330, 840], n), dtype="Int64"),
        "device": rng.choice(["phone", "car", "tv"], n),
        "network": rng.choice(["wifi", "cellular"], n),
        "context": rng.choice(np.array(["party", "sleep", None], dtype=object), n),
    })
    labels = pd.DataFrame(rng.integers(0, 2, (tracks, 2)), columns=list(CONTEXTS),
                          index=pd.Index([f"t{i}" for i in range(tracks)], name="track_id"))
    artists = pd.Series({f"t{i}": f"a{i % 11}" for i in range(tracks - 3)})       # 3 tracks without an artist
    return ev, labels, artists


def test_top_artists_match_a_from_scratch_count_at_every_snapshot():
    """The day-by-day top 3 equals recounting every artist's streams before each snapshot."""
    ev, labels, artists = _world()
    history, _ = daily_snapshots(ev, labels, artists, CONTEXTS, DEVICES, NETWORKS,
                                 fit_item_projection(ev["user_id"], ev["track_id"], 3, seed=0))
    ev = ev.assign(artist=artists.reindex(ev["track_id"]).to_numpy())
    for row in history.sample(40, random_state=0).itertuples():
        before = ev[(ev["user_id"] == row.user_id) & (ev["event_timestamp"] < row.event_timestamp)].dropna(subset=["artist"])
        counts = before.groupby("artist").size().reset_index(name="n").sort_values(["n", "artist"], ascending=[False, True])
        assert list(row.top_artists) == counts["artist"].head(3).tolist(), row
        assert row.n_streams == len(ev[(ev["user_id"] == row.user_id) & (ev["event_timestamp"] < row.event_timestamp)])


@pytest.mark.slow                   # starts Spark: the full suite, not the fast lane
def test_both_engines_give_the_same_snapshots(spark_engine):
    """DuckDB (embedded) and Spark run one SQL text: the same features to the last bit (so every
    snapshot test above, and the point-in-time tests over them, hold on Spark too)."""
    from ctxtag.listening.engine import DuckDB

    ev, labels, artists = _world(seed=5, days=4)
    proj = fit_item_projection(ev["user_id"], ev["track_id"], 4, seed=0)
    duck = DuckDB(memory_limit="1GB")
    try:
        a = daily_snapshots(ev, labels, artists, CONTEXTS, DEVICES, NETWORKS, proj, engine=duck)
    finally:
        duck.close()
    b = daily_snapshots(ev, labels, artists, CONTEXTS, DEVICES, NETWORKS, proj, engine=spark_engine)
    for x, y in zip(a, b, strict=True):
        assert list(x.columns) == list(y.columns) and len(x) == len(y) >= 50
        for c in x.columns:
            if x[c].dtype == object and isinstance(x[c].iat[0], (list, np.ndarray)):
                assert all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(x[c], y[c], strict=True)), c
            else:
                assert x[c].equals(y[c]), c


def test_group_passes_cut_only_between_users_and_give_the_same_rows_in_small_chunks():
    """``map_groups`` hands its pass whole users: cut anywhere, the top artists come out the same."""
    import pyarrow as pa

    from ctxtag.listening.engine import whole_groups
    from ctxtag.listening.snapshots import _top_k

    rng = np.random.default_rng(1)
    n = 400
    table = pa.table({"user_id": np.sort(rng.choice([f"u{i}" for i in range(30)], n)),
                      "snap": pa.array(rng.integers(0, 6, n) * 86_400_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                      "code": rng.integers(0, 9, n), "n": rng.integers(1, 5, n)})
    table = table.sort_by([("user_id", "ascending"), ("snap", "ascending")])
    chunks = list(whole_groups(table.to_batches(max_chunksize=7), "user_id", 10))
    assert len(chunks) > 5 and sum(c.num_rows for c in chunks) == n
    assert all(a["user_id"][-1].as_py() != b["user_id"][0].as_py() for a, b in zip(chunks, chunks[1:], strict=False))
    names = pa.array([f"a{i}" for i in range(9)])
    assert pa.concat_tables([_top_k(c, names) for c in chunks]).equals(_top_k(table, names))
