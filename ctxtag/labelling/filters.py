"""Playlist filters of ICASSP 2020 §3.1: long playlists and single-artist/album playlists go.

Each filter is evaluated on every playlist independently so the stats can say how many
playlists each one would drop; a playlist is kept only when it passes all of them.
"""

from __future__ import annotations

import numpy as np

from ctxtag.config import LabelConfig


def filter_flags(n_tracks: np.ndarray, max_artist: np.ndarray, max_album: np.ndarray, cfg: LabelConfig
                 ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per playlist (its track count and the entries of its most frequent artist and album): which
    filter it fails, and the stats. A playlist is kept when it fails none."""
    n = np.asarray(n_tracks, dtype=np.int64)
    failed = {
        # "more than 100 tracks" and "more than 25 %": strict inequalities, as the paper says
        "too_many_tracks": n > cfg.max_tracks,
        "artist_dominated": np.asarray(max_artist, dtype=np.int64) / n > cfg.max_artist_share,
        "album_dominated": np.asarray(max_album, dtype=np.int64) / n > cfg.max_album_share,
    }
    any_failed = failed["too_many_tracks"] | failed["artist_dominated"] | failed["album_dominated"]
    stats = {f"dropped_{name}": int(col.sum()) for name, col in failed.items()}
    stats["dropped_any_filter"] = int(any_failed.sum())
    stats["kept_after_filters"] = int((~any_failed).sum())
    return failed, stats
