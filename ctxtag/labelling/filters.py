"""Playlist filters of ICASSP 2020 §3.1: long playlists and single-artist/album playlists go.

Each filter is evaluated on every playlist independently so the stats can say how many
playlists each one would drop; a playlist is kept only when it passes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ctxtag.config import LabelConfig


@dataclass
class FilterResult:
    kept: pd.Index                 # playlist ids that pass every filter
    failed: pd.DataFrame           # per playlist: one boolean column per filter
    stats: dict[str, int]


def _max_share(entries: pd.DataFrame, column: str, n_tracks: pd.Series) -> pd.Series:
    largest = entries.groupby(["playlist_id", column]).size().groupby(level=0).max()
    return (largest / n_tracks).reindex(n_tracks.index).fillna(0.0)


def apply_filters(entries: pd.DataFrame, cfg: LabelConfig) -> FilterResult:
    """entries: one row per (playlist_id, track_id) with artist_id and album_id."""
    n_tracks = entries.groupby("playlist_id").size()
    failed = pd.DataFrame(
        {
            # "more than 100 tracks" and "more than 25 %": strict inequalities, as the paper says
            "too_many_tracks": n_tracks > cfg.max_tracks,
            "artist_dominated": _max_share(entries, "artist_id", n_tracks) > cfg.max_artist_share,
            "album_dominated": _max_share(entries, "album_id", n_tracks) > cfg.max_album_share,
        }
    )
    passed = ~failed.any(axis=1)
    stats = {f"dropped_{name}": int(col.sum()) for name, col in failed.items()}
    stats["dropped_any_filter"] = int((~passed).sum())
    stats["kept_after_filters"] = int(passed.sum())
    return FilterResult(kept=failed.index[passed], failed=failed, stats=stats)
