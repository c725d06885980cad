"""`ctxtag label`: playlists -> validated, filtered, labelled, balanced track x context set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.io import known_track_ids, read_matrix, write_json, write_matrix
from ctxtag.common.plots import heatmap
from ctxtag.common.quarantine import reason_counts, to_frame, write_quarantine
from ctxtag.config import Params
from ctxtag.labelling import balance, cooccurrence, filters, labels
from ctxtag.labelling.playlists import read_playlists


def build(params: Params, playlist_paths: list[Path] | None = None) -> tuple[labels.LabelledSet, dict, pd.DataFrame]:
    """Pure pipeline from playlist files to the balanced labelled set, stats and quarantine."""
    cfg, contexts = params.labels, params.contexts
    table = read_playlists(playlist_paths or [params.paths.playlists], known_track_ids(params.paths.tracks))
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
    chosen = balance.balance(full.labels, cfg.balance_cap, params.seed) if cfg.balance else np.ones(len(full.track_ids), bool)
    final = full.subset(chosen)

    stats = {
        "playlists_valid": len(table.playlists),
        "playlists_rejected_whole": int(quarantine["playlist_id"].dropna()
                                        .loc[lambda q: ~q.isin(table.playlists["playlist_id"])].nunique()),
        "rows_quarantined": len(quarantine),
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


def score_against_truth(final: labels.LabelledSet, truth_path: Path) -> dict:
    """On the generated world: which share of the true (track, context) pairs the labels recover."""
    ids, truth = read_matrix(truth_path, final.contexts)
    rows = pd.Index(ids).get_indexer(final.track_ids)
    t = truth[rows].astype(bool)
    y = final.labels.astype(bool)
    return {
        "label_precision": float((y & t).sum() / max(y.sum(), 1)),
        "label_recall": float((y & t).sum() / max(t.sum(), 1)),
        "missing_positive_share": float((t & ~y).sum() / max(t.sum(), 1)),
        "true_labels_per_track": float(t.sum(axis=1).mean()),
    }


def run(params: Params) -> dict:
    final, stats, quarantine = build(params)
    out, rep = params.paths.labelled, params.paths.reports
    write_matrix(final.track_ids, final.labels, final.contexts, out / "labels.csv")
    write_matrix(final.track_ids, final.counts, final.contexts, out / "counts.csv")
    final.tracks.to_csv(out / "tracks.csv", index=False)
    co = cooccurrence.cooccurrence(final.labels)
    write_matrix(np.asarray(final.contexts, dtype=object), co, final.contexts, out / "cooccurrence.csv",
                 id_column="context")
    heatmap(co, final.contexts, rep / "plots/cooccurrence.png",
            f"Tracks co-occurrences between contexts (n={len(final.track_ids)})", "tracks")
    write_quarantine(quarantine, params.paths.quarantine / "playlists.jsonl")
    truth = params.paths.raw / "truth/true_labels.csv"
    if truth.exists():
        stats["vs_truth"] = score_against_truth(final, truth)
    write_json(stats, rep / "labels.json")
    return stats
