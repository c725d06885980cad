"""`ctxtag ingest-logs`: listening-log drops -> the immutable, date-partitioned event lake."""

from __future__ import annotations

import contextlib
import json
import sys

import pandas as pd

from ctxtag.common.io import catalogue_ids, write_json
from ctxtag.common.quarantine import report_refused, write_quarantine
from ctxtag.config import Params
from ctxtag.listening.lake import ingest


def run(params: Params, now: pd.Timestamp | None = None) -> dict:
    p = params.paths
    sources = [p.listening_logs] + ([p.incoming_logs] if p.incoming_logs.exists() else [])
    result = ingest(sources, p.lake, params.logs, params.contexts, now=now,
                    known_tracks=catalogue_ids(p.tracks), data_plane=params.data_plane,
                    show_progress=sys.stderr.isatty())
    target = p.quarantined("listening_logs")
    with contextlib.ExitStack() as stack:
        keep = ()
        if result.skipped and target.exists():
            # the drops skipped as already ingested keep their rejections (the output persists
            # across runs, streamed line by line); a drop read again replaces its own
            read = set(result.read)
            keep = (line for line in stack.enter_context(target.open(encoding="utf-8"))
                    if line.strip() and json.loads(line)["source"] not in read)
        write_quarantine(result.rejections, target, keep)
    # the skipped drops are readable input too: a refused new drop alone is reported, not fatal
    report_refused(result.stats["files_refused"], result.stats["rows_read"] or len(result.skipped))
    write_json(result.stats, p.report("ingest_logs"))
    return result.stats
