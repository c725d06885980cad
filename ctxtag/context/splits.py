"""The three split types of ISMIR 2022: cold user, cold track, warm case.

- cold_user: users are split; a test user has no stream in training.
- cold_track: tracks are split by artist, following the audio tagger's artist-disjoint split, so a
  test track is unseen by the tagger that made its audio features, and by the stream models.
  Artists the tagger split does not know (unlabelled tracks) are hashed into the same ratios.
- warm: streams are split at random; a validation/test stream whose user or track has no training
  stream moves to training, so both are known at test time.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ctxtag.config import SplitConfig
from ctxtag.vocabulary import SPLIT_KINDS, SPLITS


def _cut(n: int, ratios: SplitConfig, rng: np.random.Generator) -> np.ndarray:
    """A shuffled array of n split names in the given ratios."""
    n_train = int(round(n * ratios.train))
    n_val = int(round(n * ratios.validation))
    train, validation, test = SPLITS
    names = np.array([train] * n_train + [validation] * n_val + [test] * (n - n_train - n_val))
    return rng.permutation(names)


def _hashed(keys: pd.Series, ratios: SplitConfig, seed: int) -> np.ndarray:
    """A stable split per key from its hash, for keys no other split knows."""
    u = np.array([int(hashlib.sha1(f"{seed}:{k}".encode()).hexdigest()[:8], 16) / 2**32 for k in keys])
    train, validation, test = SPLITS
    return np.where(u < ratios.train, train, np.where(u < ratios.train + ratios.validation, validation, test))


def user_splits(users: np.ndarray, ratios: SplitConfig, seed: int) -> pd.Series:
    """cold_user: the split of each user (users sorted, then a seeded permutation of the ratios)."""
    users = np.sort(np.asarray(users))
    return pd.Series(_cut(len(users), ratios, np.random.default_rng(seed)), index=users)


def artist_splits(artists: np.ndarray, ratios: SplitConfig, seed: int, track_split: pd.Series,
                  track_artist: pd.Series) -> pd.Series:
    """cold_track: the split of each artist: the one its tracks have in the tagger's (artist-disjoint)
    split, else a hashed one."""
    known = pd.DataFrame({"artist": track_artist.reindex(track_split.index).to_numpy(),
                          "split": track_split.to_numpy()}).dropna().drop_duplicates("artist")
    of_artist = known.set_index("artist")["split"]
    unknown = pd.Index(np.unique(artists)).difference(of_artist.index)
    return pd.concat([of_artist, pd.Series(_hashed(pd.Series(unknown), ratios, seed), index=unknown)])


def track_artists(track_ids: pd.Series, track_artist: pd.Series) -> np.ndarray:
    """Each track's artist; a track the catalogue does not know stands for its own artist (filled by
    position: a fillna with the ids would align on the index and leave it missing)."""
    ids = np.asarray(track_ids, dtype=object)
    artist = track_artist.reindex(ids).to_numpy(dtype=object)
    return np.where(pd.isna(artist), ids, artist)


def assign(streams: pd.DataFrame, kind: str, ratios: SplitConfig, seed: int,
           track_split: pd.Series, track_artist: pd.Series) -> np.ndarray:
    """The split name ("train" / "validation" / "test") of every stream for one split kind."""
    if kind == "cold_user":
        return user_splits(streams["user_id"].unique(), ratios, seed).reindex(streams["user_id"]).to_numpy()
    if kind == "cold_track":
        artist = track_artists(streams["track_id"], track_artist)
        return artist_splits(artist, ratios, seed, track_split, track_artist).reindex(artist).to_numpy()
    if kind == "warm":
        split = _cut(len(streams), ratios, np.random.default_rng(seed))
        train = split == "train"
        seen_user = streams["user_id"].isin(streams.loc[train, "user_id"]).to_numpy()
        seen_track = streams["track_id"].isin(streams.loc[train, "track_id"]).to_numpy()
        split[~(seen_user & seen_track)] = "train"
        return split
    raise ValueError(f"unknown split kind {kind!r}; one of {SPLIT_KINDS}")


def held_out(labelled_users: np.ndarray, track_ids: np.ndarray, kinds: tuple[str, ...], ratios: SplitConfig,
             seed: int, track_split: pd.Series, track_artist: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(users, tracks) that a cold split among ``kinds`` holds out (validation or test): what a fit
    that precedes the splits (the history embedding's SVD) must not see. ``labelled_users``: the
    users of the labelled streams (the population cold_user splits); ``track_ids``: the tracks to
    classify. warm holds out single streams of known users and tracks, so it removes nothing here."""
    train = SPLITS[0]
    users = user_splits(labelled_users, ratios, seed) if "cold_user" in kinds else pd.Series(dtype=object)
    tracks = pd.Series(np.asarray(track_ids))
    if "cold_track" in kinds:
        artist = track_artists(tracks, track_artist)
        of_track = artist_splits(artist, ratios, seed, track_split, track_artist).reindex(artist).to_numpy()
    else:
        of_track = np.full(len(tracks), train)
    return users.index[users.to_numpy() != train].to_numpy(), tracks.to_numpy()[of_track != train]
