"""Inputs of Chen et al.'s two branches, as index arrays: history matrices for the user branch,
per-user disliked lists for negative sampling, and random log-mel crops for the audio branch.

Everything here is vectorised over users / pairs (no Python loop over table rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctxtag.embeddings.model import N_DEMOGRAPHICS


@dataclass
class Vocab:
    """Ids the user branch has lookup embeddings for; index 0 is unknown / padding."""

    tracks: pd.Index
    albums: pd.Index
    artists: pd.Index
    track_album: np.ndarray          # vocabulary index of each track's album / artist (0 unknown)
    track_artist: np.ndarray

    @classmethod
    def build(cls, track_ids: Sequence[str], catalogue: pd.DataFrame) -> Vocab:
        """Vocabulary of the given tracks; ``catalogue`` maps track_id -> album_id, artist_id."""
        tracks = pd.Index(sorted(set(track_ids)))
        meta = catalogue.drop_duplicates("track_id").set_index("track_id").reindex(tracks)
        albums = pd.Index(sorted(meta["album_id"].dropna().unique()))
        artists = pd.Index(sorted(meta["artist_id"].dropna().unique()))
        return cls(tracks, albums, artists, albums.get_indexer(meta["album_id"]) + 1,
                   artists.get_indexer(meta["artist_id"]) + 1)

    def track_index(self, track_ids) -> np.ndarray:
        """1-based vocabulary index, 0 for tracks outside the vocabulary (new releases)."""
        return self.tracks.get_indexer(pd.Index(track_ids)) + 1

    def album_artist(self, track_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Album and artist indices of track indices (0 stays 0)."""
        album = np.where(track_idx > 0, np.r_[0, self.track_album][track_idx], 0)
        artist = np.where(track_idx > 0, np.r_[0, self.track_artist][track_idx], 0)
        return album, artist


def demographics(events: pd.DataFrame, users: pd.Index, genders: Sequence[str]) -> np.ndarray:
    """(n_users, 6): standardised age, age known, gender one-hot (..., unknown); latest known values."""
    ev = events.sort_values("event_timestamp")
    age = ev.dropna(subset=["age"]).groupby("user_id")["age"].last().reindex(users)
    gender = ev.dropna(subset=["gender"]).groupby("user_id")["gender"].last().reindex(users)
    known = age.notna().to_numpy()
    out = np.zeros((len(users), N_DEMOGRAPHICS), dtype=np.float32)
    out[:, 0] = np.where(known, (age.fillna(40.0).to_numpy() - 40.0) / 15.0, 0.0)
    out[:, 1] = known
    g = pd.Index(list(genders)[:3]).get_indexer(gender.astype(object).where(gender.notna(), None))
    out[np.arange(len(users)), 2 + np.where(g >= 0, g, 3)] = 1.0
    return out


def epoch_seconds(stamps: pd.Series) -> np.ndarray:
    """Whole seconds since 1970 of tz-aware UTC timestamps, whatever their stored unit."""
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


class Histories:
    """Each user's plays in time order, to cut "the last ``length`` plays before t" per query."""

    def __init__(self, plays: pd.DataFrame, users: pd.Index, vocab: Vocab, length: int):
        plays = plays[plays["user_id"].isin(users)]
        plays = plays.assign(_u=users.get_indexer(plays["user_id"])).sort_values(["_u", "event_timestamp"],
                                                                                 kind="stable")
        self.track = vocab.track_index(plays["track_id"])
        self.album, self.artist = vocab.album_artist(self.track)
        # one sorted key for (user, second): a single searchsorted cuts every user's block at t
        seconds = epoch_seconds(plays["event_timestamp"])
        self.t0 = int(seconds.min()) if len(plays) else 0
        self.key = plays["_u"].to_numpy().astype(np.int64) * 2**33 + (seconds - self.t0)
        self.user = plays["_u"].to_numpy()
        self.start = np.searchsorted(self.user, np.arange(len(users)), side="left")
        self.stop = np.searchsorted(self.user, np.arange(len(users)), side="right")
        self.length = length

    def before(self, user_idx: np.ndarray, until: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tracks, albums, artists) each (n, length), 0-padded: the last plays strictly before
        ``until`` (epoch seconds per query; None: all plays)."""
        lo, hi = self.start[user_idx], self.stop[user_idx]
        if until is not None:
            end = np.clip(np.searchsorted(self.key, user_idx.astype(np.int64) * 2**33 + (until - self.t0),
                                          side="left"), lo, hi)
        else:
            end = hi
        first = np.maximum(lo, end - self.length)
        idx = first[:, None] + np.arange(self.length)[None, :]
        valid = idx < end[:, None]
        idx = np.where(valid, idx, 0)
        pick = (lambda a: np.where(valid, a[idx], 0)) if len(self.track) else (lambda a: np.zeros_like(idx))
        return pick(self.track), pick(self.album), pick(self.artist)


class Ragged:
    """Per-user lists (e.g. disliked tracks) in CSR form, for vectorised sampling."""

    def __init__(self, user_idx: np.ndarray, values: np.ndarray, n_users: int):
        order = np.argsort(user_idx, kind="stable")
        self.values = values[order]
        self.count = np.bincount(user_idx, minlength=n_users)
        self.offset = np.r_[0, np.cumsum(self.count)[:-1]]

    def sample(self, user_idx: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """k values per query user (with replacement) and a mask of users that have any."""
        n = self.count[user_idx]
        if len(self.values) == 0:
            return np.zeros((len(user_idx), k), dtype=np.int64), np.zeros(len(user_idx), dtype=bool)
        pos = self.offset[user_idx][:, None] + (rng.random((len(user_idx), k)) * np.maximum(n, 1)[:, None]).astype(np.int64)
        has = n > 0
        return np.where(has[:, None], self.values[np.minimum(pos, len(self.values) - 1)], 0), has


def random_crops(mels: np.ndarray, rows: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One random segment of ``frames`` per row within the stored (first 30 s) log-mel: (n, mels, frames)."""
    total = mels.shape[2]
    start = rng.integers(0, max(total - frames, 0) + 1, size=len(rows))
    idx = start[:, None] + np.arange(frames)[None, :]
    return mels[rows[:, None], :, np.minimum(idx, total - 1)].transpose(0, 2, 1)


def segments(mels: np.ndarray, rows: np.ndarray, frames: int, n: int) -> tuple[np.ndarray, int]:
    """``n`` evenly spaced segments of ``frames`` per row (fewer when the stored
    mel holds fewer): (rows * n, mels, frames) and the n used."""
    total = mels.shape[2]
    n = max(min(n, total // frames), 1)
    starts = np.linspace(0, max(total - frames, 0), n).round().astype(np.int64) if n > 1 \
        else np.array([max((total - frames) // 2, 0)])
    idx = np.minimum(starts[:, None] + np.arange(frames)[None, :], total - 1)      # (n, frames)
    x = mels[rows][:, :, idx]                                                     # (rows, mels, n, frames)
    return x.transpose(0, 2, 1, 3).reshape(len(rows) * n, mels.shape[1], frames), n
