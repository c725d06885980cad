"""Track x context labels from playlist titles (ICASSP 2020 §3.1).

n_ic = number of kept playlists whose title matches context c and that contain track i;
track i gets label c when n_ic >= min_playlists. The paper's worked example (5 "dance",
3 "party", 1 "chill" playlists -> dance and party, not chill) and the released count file
(labels == counts >= 3) both say ">= 3", although the prose says "more than 3".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctxtag.labelling.matcher import match_many

__all__ = ["context_matrix", "context_counts", "labels_from_counts", "LabelledSet",
           "cooccurrence", "agreement_with_truth"]


@dataclass
class LabelledSet:
    """Everything downstream stages need, aligned on ``track_ids``."""

    track_ids: np.ndarray          # (n,) str
    contexts: tuple[str, ...]
    counts: np.ndarray             # (n, m) int32: n_ic
    labels: np.ndarray             # (n, m) uint8
    tracks: pd.DataFrame           # track_id, artist_id, album_id

    def frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, columns=list(self.contexts)).assign(
            track_id=self.track_ids)[["track_id", *self.contexts]]

    def subset(self, mask: np.ndarray) -> LabelledSet:
        ids = self.tracks["track_id"].to_numpy()
        if len(ids) == len(self.track_ids) and (ids == self.track_ids).all():      # row for row: the mask
            tracks = self.tracks[mask]
        else:
            tracks = self.tracks[self.tracks["track_id"].isin(set(self.track_ids[mask]))]
        return LabelledSet(self.track_ids[mask], self.contexts, self.counts[mask], self.labels[mask],
                           tracks.reset_index(drop=True))


def context_matrix(titles: Sequence[str], contexts: Sequence[str]) -> np.ndarray:
    """(n_playlists, m) uint8: which contexts each title names (each distinct title matched once)."""
    codes, distinct = pd.factorize(np.asarray(titles, dtype=object))
    found = match_many(distinct, contexts)
    index = {c: j for j, c in enumerate(contexts)}
    rows = np.fromiter((i for i, s in enumerate(found) for _ in s), dtype=np.int64)
    cols = np.fromiter((index[c] for s in found for c in s), dtype=np.int64)
    per_title = np.zeros((len(found), len(contexts)), dtype=np.uint8)
    per_title[rows, cols] = 1
    return per_title[codes] if len(codes) else np.zeros((0, len(contexts)), dtype=np.uint8)


def labels_from_counts(counts: np.ndarray, min_playlists: int) -> np.ndarray:
    return (counts >= min_playlists).astype(np.uint8)


def context_counts(entry_playlist: np.ndarray, entry_track: np.ndarray, kept: np.ndarray,
                   playlist_ctx: np.ndarray, n_tracks: int) -> np.ndarray:
    """(n_tracks, m) int32 n_ic over coded entries of the ``kept`` playlists (a playlist holds a
    track once, so its entries are playlists): one bincount over (track, context) cells — an entry
    of a playlist naming one context is one cell, the rarer multi-context playlists add a cell each."""
    m = playlist_ctx.shape[1]
    sel = kept[entry_playlist]
    p, t = entry_playlist[sel], entry_track[sel].astype(np.int64)
    named = playlist_ctx.astype(bool)
    single = named.sum(axis=1) == 1
    cells = [t[single[p]] * m + named.argmax(axis=1)[p[single[p]]]]
    multi = ~single[p]
    if multi.any():
        pm, tm = p[multi], t[multi]
        cells += [tm[named[pm, j]] * m + j for j in range(m)]           # one pass per context, not per row
    out = np.bincount(np.concatenate(cells), minlength=n_tracks * m) if n_tracks else np.zeros(0, np.int64)
    return out.reshape(n_tracks, m).astype(np.int32)


def track_metadata(entry_track: np.ndarray, entry_artist: np.ndarray, entry_album: np.ndarray,
                   tracks: np.ndarray, artists: np.ndarray, albums: np.ndarray) -> pd.DataFrame:
    """artist and album of each of ``tracks`` (codes, in output order) over the given entries: the
    most frequent pair; on a tie the first pair in text order (artist, then album). A track whose
    entries all agree (nearly all) is settled by one comparison per entry; the others are counted."""
    n = len(tracks)
    rank = np.full(max(int(entry_track.max(initial=-1)), int(tracks.max(initial=-1))) + 1, -1, dtype=np.int64)
    rank[tracks] = np.arange(n)
    r = rank[entry_track]
    sel = r >= 0
    r, a, b = r[sel], entry_artist[sel], entry_album[sel]
    ref = np.full(n, -1, dtype=np.int64)
    ref[r] = np.arange(len(r))                                     # one entry of each track, any one
    if (ref < 0).any():
        raise ValueError("a track without entries has no artist or album")
    best_a, best_b = a[ref], b[ref]
    differs = (a != best_a[r]) | (b != best_b[r])
    if differs.any():
        mixed = np.zeros(n, dtype=bool)
        mixed[r[differs]] = True
        at = mixed[r]
        pairs = pd.DataFrame({"t": r[at], "a": a[at], "b": b[at]})
        counted = pairs.groupby(["t", "a", "b"], sort=False).size().rename("n").reset_index()
        counted = counted[counted["n"].to_numpy() == counted.groupby("t")["n"].transform("max").to_numpy()]
        counted = counted.assign(artist=artists[counted["a"].to_numpy()], album=albums[counted["b"].to_numpy()])
        counted = counted.sort_values(["t", "artist", "album"], kind="stable").drop_duplicates("t")
        best_a[counted["t"].to_numpy()] = counted["a"].to_numpy()
        best_b[counted["t"].to_numpy()] = counted["b"].to_numpy()
    return pd.DataFrame({"artist_id": artists[best_a], "album_id": albums[best_b]})


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """ICASSP 2020 Fig. 1: how many tracks carry each pair of contexts."""
    y = labels.astype(np.int64)
    return y.T @ y


def agreement_with_truth(final: LabelledSet, truth_ids: np.ndarray, truth: np.ndarray) -> dict:
    """On the generated world: which share of the true (track, context) pairs the labels recover."""
    rows = pd.Index(truth_ids).get_indexer(final.track_ids)
    t = truth[rows].astype(bool)
    y = final.labels.astype(bool)
    return {
        "label_precision": float((y & t).sum() / max(y.sum(), 1)),
        "label_recall": float((y & t).sum() / max(t.sum(), 1)),
        "missing_positive_share": float((t & ~y).sum() / max(t.sum(), 1)),
        "true_labels_per_track": float(t.sum(axis=1).mean()),
    }
