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


def assign(streams: pd.DataFrame, kind: str, ratios: SplitConfig, seed: int,
           track_split: pd.Series, track_artist: pd.Series) -> np.ndarray:
    """The split name ("train" / "validation" / "test") of every stream for one split kind."""
    rng = np.random.default_rng(seed)
    if kind == "cold_user":
        users = np.sort(streams["user_id"].unique())
        of_user = pd.Series(_cut(len(users), ratios, rng), index=users)
        return of_user.reindex(streams["user_id"]).to_numpy()
    if kind == "cold_track":
        artist = track_artist.reindex(streams["track_id"]).fillna(streams["track_id"]).to_numpy()
        # an artist's split in the tagger's (artist-disjoint) split, else a hashed one
        known = pd.DataFrame({"artist": track_artist.reindex(track_split.index).to_numpy(),
                              "split": track_split.to_numpy()}).dropna().drop_duplicates("artist")
        of_artist = known.set_index("artist")["split"]
        unknown = pd.Index(np.unique(artist)).difference(of_artist.index)
        of_artist = pd.concat([of_artist, pd.Series(_hashed(pd.Series(unknown), ratios, seed), index=unknown)])
        return of_artist.reindex(artist).to_numpy()
    if kind == "warm":
        split = _cut(len(streams), ratios, rng)
        train = split == "train"
        seen_user = streams["user_id"].isin(streams.loc[train, "user_id"]).to_numpy()
        seen_track = streams["track_id"].isin(streams.loc[train, "track_id"]).to_numpy()
        split[~(seen_user & seen_track)] = "train"
        return split
    raise ValueError(f"unknown split kind {kind!r}; one of {SPLIT_KINDS}")
