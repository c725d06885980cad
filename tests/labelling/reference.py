"""The labelling stage as it was before playlists were read into codes (commit 867f11c): every
file flattened into one pandas frame of strings, concatenated, then labelled with pandas
group-bys. Kept here, test-only, as the reference the coded path must match exactly."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ctxtag.common.io import collect_files
from ctxtag.common.quarantine import Rejection, reason_counts, to_frame
from ctxtag.common.text_rows import UNREADABLE, refused
from ctxtag.config import LabelConfig
from ctxtag.labelling import balance, labels
from ctxtag.labelling.matcher import match_many
from ctxtag.labelling.playlists import (
    _READERS,
    PlaylistTable,
    _known,
    detect_format,
    validate_entries,
)

_TRACK_KEYS = ["track_id", "artist_id", "album_id"]
_EMPTY_PLAYLISTS = pd.DataFrame(columns=["playlist_id", "title", "source", "row"])
_EMPTY_ENTRIES = pd.DataFrame(columns=["playlist_id", *_TRACK_KEYS])


def read_playlists(paths: Iterable[str | Path], known_tracks: set[str] | None = None) -> PlaylistTable:
    files = collect_files(paths, _known, "playlist")
    tables = []
    for f in files:
        rejections: list[Rejection] = []
        fmt = detect_format(f)
        try:
            flat = _READERS[fmt](f, rejections)
        except UNREADABLE as exc:
            tables.append(PlaylistTable(_EMPTY_PLAYLISTS, _EMPTY_ENTRIES, [refused(f, exc)]))
            continue
        table = validate_entries(flat, f, nested=fmt in ("jsonl", "mpd") or "_nested" in flat.attrs,
                                 known_tracks=known_tracks)
        table.rejections[:0] = rejections
        tables.append(table)
    return _concat(tables)


def _concat(tables: list[PlaylistTable]) -> PlaylistTable:
    if not tables:
        return PlaylistTable(_EMPTY_PLAYLISTS, _EMPTY_ENTRIES, [])
    playlists = pd.concat([t.playlists for t in tables], ignore_index=True)
    entries = pd.concat([t.entries.assign(source=t.playlists["source"].iloc[0] if len(t.playlists) else "")
                         for t in tables], ignore_index=True)
    rejections = [r for t in tables for r in t.rejections]
    dup = playlists.duplicated("playlist_id", keep="first")
    first = playlists[~dup].set_index("playlist_id")
    for r in playlists[dup].itertuples(index=False):
        src = first.loc[r.playlist_id]
        rejections.append(Rejection(r.source, int(r.row),
                                    f"duplicate playlist_id: first seen in {src.source} row {src.row}",
                                    playlist_id=r.playlist_id, raw=str(r.title)))
    kept = entries.merge(playlists[~dup][["playlist_id", "source"]], on=["playlist_id", "source"])
    return PlaylistTable(playlists[~dup].reset_index(drop=True),
                         kept.drop(columns="source").reset_index(drop=True), rejections)


def context_matrix(titles, contexts) -> np.ndarray:
    found = match_many(titles, contexts)
    index = {c: j for j, c in enumerate(contexts)}
    rows = np.fromiter((i for i, s in enumerate(found) for _ in s), dtype=np.int64)
    cols = np.fromiter((index[c] for s in found for c in s), dtype=np.int64)
    out = np.zeros((len(found), len(contexts)), dtype=np.uint8)
    out[rows, cols] = 1
    return out


def _max_share(entries: pd.DataFrame, column: str, n_tracks: pd.Series) -> pd.Series:
    largest = entries.groupby(["playlist_id", column]).size().groupby(level=0).max()
    return (largest / n_tracks).reindex(n_tracks.index).fillna(0.0)


def apply_filters(entries: pd.DataFrame, cfg: LabelConfig) -> tuple[pd.Index, dict]:
    n_tracks = entries.groupby("playlist_id").size()
    failed = pd.DataFrame({
        "too_many_tracks": n_tracks > cfg.max_tracks,
        "artist_dominated": _max_share(entries, "artist_id", n_tracks) > cfg.max_artist_share,
        "album_dominated": _max_share(entries, "album_id", n_tracks) > cfg.max_album_share,
    })
    passed = ~failed.any(axis=1)
    stats = {f"dropped_{name}": int(col.sum()) for name, col in failed.items()}
    stats["dropped_any_filter"] = int((~passed).sum())
    stats["kept_after_filters"] = int(passed.sum())
    return failed.index[passed], stats


def playlist_counts(entries: pd.DataFrame, playlist_ids: pd.Index, playlist_ctx: np.ndarray):
    pl_codes = pd.Index(playlist_ids).get_indexer(entries["playlist_id"])
    keep = pl_codes >= 0
    pairs = pd.DataFrame({"p": pl_codes[keep], "t": entries["track_id"].to_numpy()[keep]}).drop_duplicates()
    t_codes, track_ids = pd.factorize(pairs["t"], sort=True)
    incidence = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.int32), (t_codes, pairs["p"].to_numpy())),
        shape=(len(track_ids), len(playlist_ids)),
    )
    counts = np.asarray(incidence @ sp.csr_matrix(playlist_ctx.astype(np.int32)).toarray(), dtype=np.int32)
    return np.asarray(track_ids, dtype=object), counts


def track_metadata(entries: pd.DataFrame, track_ids: np.ndarray) -> pd.DataFrame:
    pairs = entries.groupby(["track_id", "artist_id", "album_id"]).size().rename("n").reset_index()
    best = pairs.sort_values(["track_id", "n"], ascending=[True, False]).drop_duplicates("track_id")
    return best.set_index("track_id").loc[track_ids, ["artist_id", "album_id"]].reset_index()


def label_playlists(table: PlaylistTable, contexts: tuple[str, ...], cfg: LabelConfig, seed: int):
    quarantine = to_frame(table.rejections)

    ctx = context_matrix(table.playlists["title"].tolist(), contexts)
    has_ctx = ctx.any(axis=1)
    ctx_ids = pd.Index(table.playlists["playlist_id"][has_ctx])
    ctx_entries = table.entries[table.entries["playlist_id"].isin(ctx_ids)]
    filtered_kept, filtered_stats = apply_filters(ctx_entries, cfg)
    kept = ctx_ids.intersection(filtered_kept)
    kept_ctx = ctx[has_ctx][ctx_ids.get_indexer(kept)]

    track_ids, counts = playlist_counts(ctx_entries, kept, kept_ctx)
    y = labels.labels_from_counts(counts, cfg.min_playlists)
    labelled = y.any(axis=1)
    full = labels.LabelledSet(track_ids, contexts, counts, y,
                              track_metadata(ctx_entries, track_ids)).subset(labelled)
    chosen = balance.balance(full.labels, cfg.balance_cap, seed) if cfg.balance else np.ones(len(full.track_ids), bool)
    final = full.subset(chosen)

    stats = {
        "playlists_valid": len(table.playlists),
        "playlists_rejected_whole": int(quarantine["playlist_id"].dropna()
                                        .loc[lambda q: ~q.isin(table.playlists["playlist_id"])].nunique()),
        "rows_quarantined": len(quarantine),
        "files_refused": quarantine.loc[quarantine["row"] == 0].set_index("source")["reason"].to_dict(),
        "quarantine_reasons": reason_counts(quarantine),
        "playlists_with_context_keyword": int(has_ctx.sum()),
        "playlists_without_context_keyword": int((~has_ctx).sum()),
        **filtered_stats,
        "playlists_kept": len(kept),
        "playlists_kept_per_context": dict(zip(contexts, kept_ctx.sum(axis=0).tolist(), strict=True)),
        "tracks_in_kept_playlists": len(track_ids),
        "tracks_labelled": int(labelled.sum()),
        "balance_cap": cfg.balance_cap,
        "tracks_after_balancing": len(final.track_ids),
        "labels_per_track": float(final.labels.sum(axis=1).mean()) if len(final.track_ids) else 0.0,
        "positives_per_context": dict(zip(contexts, final.labels.sum(axis=0).tolist(), strict=True)),
    }
    return final, stats, quarantine
