"""The labelling pipeline of ICASSP 2020 §3, end to end in memory: titles matched to contexts,
playlists filtered, tracks labelled by playlist counts, the set balanced."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.common.quarantine import reason_counts, to_frame
from ctxtag.config import LabelConfig
from ctxtag.labelling import balance, filters, labels
from ctxtag.labelling.playlists import PlaylistTable


def label_playlists(table: PlaylistTable, contexts: tuple[str, ...], cfg: LabelConfig,
                    seed: int) -> tuple[labels.LabelledSet, dict, pd.DataFrame]:
    """Read playlists -> the balanced labelled set, its stats and the quarantined rows (ICASSP 2020 §3)."""
    quarantine = to_frame(table.rejections)

    ctx = labels.context_matrix(table.playlists["title"].tolist(), contexts)
    has_ctx = ctx.any(axis=1)
    ctx_ids = pd.Index(table.playlists["playlist_id"][has_ctx])
    ctx_entries = table.entries[table.entries["playlist_id"].isin(ctx_ids)]
    filtered = filters.apply_filters(ctx_entries, cfg)
    kept = ctx_ids.intersection(filtered.kept)
    kept_ctx = ctx[has_ctx][ctx_ids.get_indexer(kept)]

    track_ids, counts = labels.playlist_counts(ctx_entries, kept, kept_ctx)
    y = labels.labels_from_counts(counts, cfg.min_playlists)
    labelled = y.any(axis=1)
    full = labels.LabelledSet(track_ids, contexts, counts, y,
                              labels.track_metadata(ctx_entries, track_ids)).subset(labelled)
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
        **filtered.stats,
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
