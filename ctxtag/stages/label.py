"""`ctxtag label`: playlists -> validated, filtered, labelled, balanced track x context set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctxtag.common.headline import write_report
from ctxtag.common.io import atomic_path, read_matrix, write_matrix
from ctxtag.common.plots import heatmap
from ctxtag.common.quarantine import report_refused, write_quarantine
from ctxtag.config import Params
from ctxtag.labelling.labels import agreement_with_truth, cooccurrence
from ctxtag.labelling.pipeline import label_playlists
from ctxtag.labelling.scan import scan_playlists

# the figures `dvc metrics show` compares between runs (ctxtag.common.headline)
HEADLINE = ["playlists_valid", "rows_quarantined", "playlists_kept", "tracks_labelled", "tracks_after_balancing",
            "labels_per_track", "vs_truth.*"]


def run(params: Params, playlist_paths: list[Path] | None = None) -> dict:
    p = params.paths
    # one file at a time, entries as integer codes (worker processes for a large input)
    table = scan_playlists(playlist_paths or [p.playlists], Path(p.tracks) if p.tracks else None,
                           contexts=params.contexts)
    final, stats, quarantine = label_playlists(table, params.contexts, params.labels, params.seed)
    write_quarantine(quarantine, p.quarantined("playlists"))
    # before any output; rows read = kept or quarantined, the refusals themselves aside
    report_refused(stats["files_refused"], stats["playlists_valid"] + stats["rows_quarantined"] - len(stats["files_refused"]))
    write_matrix(final.track_ids, final.labels, final.contexts, p.labels_csv)
    write_matrix(final.track_ids, final.counts, final.contexts, p.counts_csv)
    with atomic_path(p.labelled_tracks_csv) as tmp:
        final.tracks.to_csv(tmp, index=False)
    co = cooccurrence(final.labels)
    write_matrix(np.asarray(final.contexts, dtype=object), co, final.contexts, p.cooccurrence_csv,
                 id_column="context")
    heatmap(co, final.contexts, p.plot("cooccurrence"),
            f"Tracks co-occurrences between contexts (n={len(final.track_ids)})", "tracks")
    if p.true_labels_csv.exists():
        stats["vs_truth"] = agreement_with_truth(final, *read_matrix(p.true_labels_csv, final.contexts))
    write_report(stats, p, "labels", HEADLINE)
    return stats
