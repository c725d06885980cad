import numpy as np
import pandas as pd

from ctxtag.embeddings.data import (
    Histories,
    Ragged,
    Vocab,
    demographics,
    epoch_seconds,
    random_crops,
    segments,
)

CATALOGUE = pd.DataFrame({"track_id": ["a", "b", "c", "d"], "album_id": ["A1", "A1", "B1", "C1"],
                          "artist_id": ["X", "X", "Y", "Z"]})


def _plays(rng, n=300):
    users = rng.choice(["u0", "u1", "u2"], n)
    return pd.DataFrame({"user_id": users, "track_id": rng.choice(["a", "b", "c", "d", "new"], n),
                         "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
                         + pd.to_timedelta(rng.integers(0, 10**6, n), "s")})


def test_vocab_maps_unknown_tracks_to_padding_and_carries_album_and_artist():
    vocab = Vocab.build(["a", "b", "c"], CATALOGUE)
    idx = vocab.track_index(["c", "a", "new"])
    assert idx[2] == 0 and idx[0] > 0 and idx[1] > 0
    album, artist = vocab.album_artist(np.r_[vocab.track_index(["a", "b"]), 0])
    assert album[0] == album[1] > 0 and artist[0] == artist[1] > 0 and album[2] == artist[2] == 0


def test_history_before_is_the_last_plays_strictly_before_t_like_a_loop():
    rng = np.random.default_rng(0)
    plays = _plays(rng)
    users = pd.Index(["u0", "u1", "u2"])
    vocab = Vocab.build(["a", "b", "c", "d"], CATALOGUE)
    hist = Histories(plays, users, vocab, length=5)
    q_user = rng.integers(0, 3, 40)
    q_until = epoch_seconds(plays["event_timestamp"].sample(40, replace=True, random_state=1).reset_index(drop=True))
    tracks, albums, _ = hist.before(q_user, q_until)
    secs = epoch_seconds(plays["event_timestamp"])
    for i in range(40):
        mine = plays[(plays["user_id"] == users[q_user[i]]).to_numpy() & (secs < q_until[i])]
        expect = vocab.track_index(mine.sort_values("event_timestamp", kind="stable")["track_id"].tail(5))
        got = tracks[i][: len(expect)]
        assert got.tolist() == expect.tolist() and (tracks[i][len(expect):] == 0).all()
    everything, _, _ = hist.before(np.arange(3))
    assert ((everything > 0).sum(axis=1) <= 5).all()


def test_demographics_one_hot_gender_and_flag_unknown_age():
    ev = pd.DataFrame({"user_id": ["u0", "u1", "u1"], "age": [40.0, np.nan, 55.0], "gender": ["f", None, "m"],
                       "event_timestamp": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-02"], utc=True)})
    d = demographics(ev, pd.Index(["u0", "u1", "u9"]), ["f", "m", "x"])
    assert d[0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert d[1, 0] == 1.0 and d[1, 3] == 1.0
    assert d[2].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]               # unknown user: all unknown


def test_ragged_samples_only_the_users_own_values():
    r = Ragged(np.array([2, 0, 2, 2]), np.array([20, 1, 21, 22]), n_users=4)
    vals, has = r.sample(np.array([2, 0, 1, 2]), 50, np.random.default_rng(0))
    assert has.tolist() == [True, True, False, True]
    assert set(vals[0]) == {20, 21, 22} and set(vals[1]) == {1} and (vals[2] == 0).all()


def test_random_crops_are_slices_of_the_stored_mel():
    mels = np.arange(3 * 4 * 50, dtype=np.float32).reshape(3, 4, 50)
    rng = np.random.default_rng(0)
    crops = random_crops(mels, np.array([2, 0]), 10, rng)
    assert crops.shape == (2, 4, 10)
    start = int(crops[0, 0, 0] - mels[2, 0, 0])
    np.testing.assert_array_equal(crops[0], mels[2, :, start:start + 10])
    seg, n = segments(mels, np.array([1]), 10, 3)
    assert n == 3 and seg.shape == (3, 4, 10)
    np.testing.assert_array_equal(seg[0], mels[1, :, :10])
    np.testing.assert_array_equal(seg[2], mels[1, :, 40:])
