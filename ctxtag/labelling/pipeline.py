"""The labelling pipeline of ICASSP 2020 §3, end to end in memory: titles matched to contexts,
playlists filtered, tracks labelled by playlist counts, the set balanced.

It runs on ``PlaylistCodes`` (entries as integer codes: see ``scan``): every step is a vectorised
operation on code arrays — a bincount per context for n_ic, per-playlist counts for the filters —
and only the labelled tracks' ids are ever sorted as text (the output is in track id order)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.common.quarantine import reason_counts, to_frame
from ctxtag.config import LabelConfig
from ctxtag.labelling import balance, filters, labels
from ctxtag.labelling.playlists import PlaylistTable
from ctxtag.labelling.scan import PlaylistCodes


def label_playlists(table: PlaylistTable | PlaylistCodes, contexts: tuple[str, ...], cfg: LabelConfig,
                    seed: int) -> tuple[labels.LabelledSet, dict, pd.DataFrame]:
    """Read playlists -> the balanced labelled set, its stats and the quarantined rows (ICASSP 2020 §3)."""
    codes = table if isinstance(table, PlaylistCodes) else PlaylistCodes.from_table(table)
    quarantine = to_frame(codes.rejections)

    if codes.context_bits is not None and codes.contexts == tuple(contexts):      # matched while scanning
        ctx = ((codes.context_bits[:, None] >> np.arange(len(contexts))) & 1).astype(np.uint8)
    else:
        ctx = labels.context_matrix(codes.titles, contexts)
    has_ctx = ctx.any(axis=1)
    # the filters see the context playlists that have entries (a valid playlist always has some)
    judged = np.flatnonzero(has_ctx & (codes.n_tracks > 0))
    failed, filter_stats = filters.filter_flags(codes.n_tracks[judged], codes.max_artist[judged],
                                                codes.max_album[judged], cfg)
    passed = ~(failed["too_many_tracks"] | failed["artist_dominated"] | failed["album_dominated"])
    kept = np.zeros(len(codes.playlist_ids), dtype=bool)
    kept[judged[passed]] = True
    kept_ctx = ctx[kept]

    n_ic = labels.context_counts(codes.entry_playlist, codes.entry_track, kept, ctx, len(codes.tracks))
    in_kept = n_ic.any(axis=1)                       # a kept playlist names a context: its tracks count
    labelled = np.flatnonzero((n_ic >= cfg.min_playlists).any(axis=1))
    order = labelled[np.argsort(codes.tracks[labelled], kind="stable")]     # track id order
    counts = n_ic[order]
    del n_ic
    in_ctx = has_ctx[codes.entry_playlist]
    entries = (codes.entry_track, codes.entry_artist, codes.entry_album)
    if not in_ctx.all():                 # scanned for labelling, every entry is a context playlist's already
        entries = tuple(e[in_ctx] for e in entries)
    meta = labels.track_metadata(*entries, order, codes.artists, codes.albums)
    track_ids = np.asarray(codes.tracks[order], dtype=object)
    full = labels.LabelledSet(track_ids, contexts, counts, labels.labels_from_counts(counts, cfg.min_playlists),
                              meta.assign(track_id=track_ids)[["track_id", "artist_id", "album_id"]])
    chosen = balance.balance(full.labels, cfg.balance_cap, seed) if cfg.balance else np.ones(len(full.track_ids), bool)
    final = full.subset(chosen)

    valid = set(codes.playlist_ids.tolist())
    stats = {
        "playlists_valid": len(codes.playlist_ids),
        # distinct quarantined ids with no valid playlist (a set lookup each, not an isin of 1M ids)
        "playlists_rejected_whole": sum(p not in valid for p in quarantine["playlist_id"].dropna().unique()),
        "rows_quarantined": len(quarantine),
        "files_refused": quarantine.loc[quarantine["row"] == 0].set_index("source")["reason"].to_dict(),
        "quarantine_reasons": reason_counts(quarantine),
        "playlists_with_context_keyword": int(has_ctx.sum()),
        "playlists_without_context_keyword": int((~has_ctx).sum()),
        **filter_stats,
        "playlists_kept": int(kept.sum()),
        "playlists_kept_per_context": dict(zip(contexts, kept_ctx.sum(axis=0).tolist(), strict=True)),
        "tracks_in_kept_playlists": int(in_kept.sum()),
        "tracks_labelled": len(labelled),
        "balance_cap": cfg.balance_cap,
        "tracks_after_balancing": len(final.track_ids),
        "labels_per_track": float(final.labels.sum(axis=1).mean()) if len(final.track_ids) else 0.0,
        "positives_per_context": dict(zip(contexts, final.labels.sum(axis=0).tolist(), strict=True)),
    }
    return final, stats, quarantine
