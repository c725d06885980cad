"""`ctxtag ingest-logs`: listening-log drops -> the immutable, date-partitioned event lake."""

from __future__ import annotations

import sys

import pandas as pd

from ctxtag.common.io import known_track_ids, write_json
from ctxtag.common.quarantine import report_refused, write_quarantine
from ctxtag.config import Params
from ctxtag.listening.lake import ingest


def run(params: Params, now: pd.Timestamp | None = None) -> dict:
    p = params.paths
    sources = [p.listening_logs] + ([p.incoming_logs] if p.incoming_logs.exists() else [])
    result = ingest(sources, p.lake, params.logs, params.contexts, now=now,
                    known_tracks=known_track_ids(p.tracks), data_plane=params.data_plane,
                    show_progress=sys.stderr.isatty())
    write_quarantine(result.rejections, p.quarantined("listening_logs"))
    report_refused(result.stats["files_refused"], result.stats["rows_read"])
    write_json(result.stats, p.report("ingest_logs"))
    return result.stats
