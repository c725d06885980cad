import numpy as np
import pandas as pd
import pytest

from ctxtag.config import SplitConfig
from ctxtag.context.splits import assign, held_out

RATIOS = SplitConfig()


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    tracks = [f"t{i}" for i in range(60)]
    artist = pd.Series({t: f"a{i // 3}" for i, t in enumerate(tracks)})
    # the tagger's artist-disjoint split knows the first 45 tracks (15 artists)
    artists_known = sorted({artist[t] for t in tracks[:45]})
    of_artist = dict(zip(artists_known, np.resize(["train", "train", "validation", "test"], 15), strict=True))
    track_split = pd.Series({t: of_artist[artist[t]] for t in tracks[:45]})
    streams = pd.DataFrame({"user_id": rng.choice([f"u{i}" for i in range(40)], 3000),
                            "track_id": rng.choice(tracks, 3000)})
    return streams, track_split, artist


def _parts(streams, split, col):
    return {s: set(streams.loc[split == s, col]) for s in ("train", "validation", "test")}


def test_cold_user_test_users_never_train(world):
    streams, ts, artist = world
    split = assign(streams, "cold_user", RATIOS, 0, ts, artist)
    users = _parts(streams, split, "user_id")
    assert users["test"] and not users["test"] & users["train"] and not users["validation"] & users["train"]
    assert abs(len(users["test"]) / 40 - RATIOS.test) < 0.05


def test_cold_track_follows_the_tagger_split_and_keeps_artists_apart(world):
    streams, ts, artist = world
    split = assign(streams, "cold_track", RATIOS, 0, ts, artist)
    known = streams["track_id"].isin(ts.index).to_numpy()
    assert (split[known] == ts.reindex(streams["track_id"][known]).to_numpy()).all()
    arts = {s: {artist[t] for t in tr} for s, tr in _parts(streams, split, "track_id").items()}
    assert not arts["test"] & arts["train"] and not arts["validation"] & arts["train"]
    # the unknown artists are spread by hash, the same way every time
    assert (split == assign(streams, "cold_track", RATIOS, 0, ts, artist)).all()


def test_warm_test_streams_have_known_users_and_tracks(world):
    streams, ts, artist = world
    split = assign(streams, "warm", RATIOS, 0, ts, artist)
    users, tracks = _parts(streams, split, "user_id"), _parts(streams, split, "track_id")
    assert users["test"] <= users["train"] and tracks["test"] <= tracks["train"]
    assert abs((split == "test").mean() - RATIOS.test) < 0.03


def test_unknown_kind_is_refused(world):
    streams, ts, artist = world
    with pytest.raises(ValueError, match="unknown split kind"):
        assign(streams, "lukewarm", RATIOS, 0, ts, artist)


def test_held_out_is_what_the_cold_splits_hold_out(world):
    streams, ts, artist = world
    kinds = ("cold_user", "cold_track", "warm")
    users, tracks = held_out(streams["user_id"].unique(), streams["track_id"].unique(), kinds, RATIOS, 0, ts, artist)
    by_user = assign(streams, "cold_user", RATIOS, 0, ts, artist)
    by_track = assign(streams, "cold_track", RATIOS, 0, ts, artist)
    assert set(users) == set(streams.loc[by_user != "train", "user_id"]) and len(users)
    assert set(tracks) == set(streams.loc[by_track != "train", "track_id"]) and len(tracks)
    # warm alone holds out single streams of known users and tracks: nothing to leave out of a fit
    none = held_out(streams["user_id"].unique(), streams["track_id"].unique(), ("warm",), RATIOS, 0, ts, artist)
    assert len(none[0]) == 0 and len(none[1]) == 0


def test_a_track_the_catalogue_does_not_know_stands_for_its_own_artist(world):
    streams, ts, artist = world
    extra = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "track_id": ["new1", "new2", "new1"]})
    both = pd.concat([streams, extra], ignore_index=True)
    split = assign(both, "cold_track", RATIOS, 0, ts, artist)
    assert set(split) <= {"train", "validation", "test"}          # no missing split for the new tracks
    assert split[-3] == split[-1]                                  # one track, one split
