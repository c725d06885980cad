"""Listening-log ingestion: validated, deduplicated, date-partitioned, immutable.

Rows of (user_id, track_id, timestamp with time zone, device, network, [location, age, gender,
context, feedback]) arrive as CSV or parquet drops. Every rule is vectorised; a row that breaks one goes to
the quarantine with its file, row and reason, and the others go on. Valid events are stored by
UTC date as ``date=YYYY-MM-DD/part-<content hash>.parquet``: a partition file is never rewritten,
late or out-of-order events for a date land in a new part, and an event already in the lake
(same user, track and instant) is not written again — so re-ingesting the same drop is a no-op.
The rules themselves live in ctxtag.listening.rules, shared with the logs gate and the API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.io import atomic_path, collect_files
from ctxtag.common.quarantine import InputError, Rejection
from ctxtag.common.text_rows import UNREADABLE, headerless, read_csv_rows, refused
from ctxtag.common.value_kinds import kinds
from ctxtag.config import LogsConfig
from ctxtag.listening import rules
from ctxtag.listening.rules import KEY, OPTIONAL, REQUIRED


@dataclass
class Ingestion:
    valid: pd.DataFrame
    rejections: list[Rejection]
    stats: dict


def is_drop(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz", ".parquet"))


def _read_drop(path: Path) -> tuple[pd.DataFrame, list[Rejection]]:
    """One drop file as text columns with row numbers; CSV records that do not parse are rejected."""
    if path.name.lower().endswith(".parquet"):
        frame = pd.read_parquet(path)
        for col in frame.columns[frame.dtypes.map(lambda t: isinstance(t, pd.DatetimeTZDtype))]:
            frame[col] = frame[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")   # the offset survives as text
        frame["row"] = np.arange(1, len(frame) + 1)
        frame, malformed = _typed_cells(frame, path)
    else:
        frame, malformed = read_csv_rows(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing and not headerless(frame):
        raise InputError(path, f"missing required column(s) {missing}; found {[c for c in frame.columns if c != 'row']}")
    for col in (*REQUIRED, *OPTIONAL):
        if col not in frame.columns:
            frame[col] = None
    frame = frame[[*REQUIRED, *OPTIONAL, "row"]].astype(object)
    frame["source"] = str(path)
    return frame, malformed


def _typed_cells(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[Rejection]]:
    """Parquet carries types: a cell that is a list, a map, bytes or a boolean is no id, category
    or age, and is rejected before anything turns it into text ("[1]" is not a user)."""
    reason = pd.Series(None, index=frame.index, dtype=object)
    for col in [c for c in (*REQUIRED, *OPTIONAL) if c in frame.columns]:
        found = kinds(frame[col])
        wrong = ~found.isin(["text", "integer", "number", "missing"]) & reason.isna()
        reason[wrong] = f"{col} must be text or a number, not " + found[wrong]
    bad = reason.notna()
    rejections = [Rejection(str(path), int(row), str(why), raw=str(frame.loc[i, [c for c in frame.columns if c != "row"]].to_dict()))
                  for i, row, why in zip(frame.index[bad], frame.loc[bad, "row"], reason[bad], strict=True)]
    return frame.loc[~bad], rejections


def read_drops(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Every CSV (plain or gzipped) and parquet file under ``paths``, with its source file and row
    number, and what could not be read: malformed CSV records, and whole files that are not what
    their name says (refused one by one; the others go on)."""
    frames, rejections = [], []
    for f in collect_files(paths, is_drop, "listening-log"):
        try:
            frame, malformed = _read_drop(f)
        except UNREADABLE as exc:
            rejections.append(refused(f, exc))
            continue
        frames.append(frame)
        rejections += malformed
    if not frames:
        return pd.DataFrame(columns=[*REQUIRED, *OPTIONAL, "row", "source"], dtype=object), rejections
    return pd.concat(frames, ignore_index=True), rejections


def validate(raw: pd.DataFrame, cfg: LogsConfig, contexts: Sequence[str], now: pd.Timestamp,
             known_tracks: set[str] | None = None) -> tuple[pd.DataFrame, list[Rejection]]:
    """Apply the rule table (ctxtag.listening.rules); a row's reason is the first rule it breaks.
    Returns valid events."""
    df = rules.prepare(raw)
    reason = rules.first_broken(df, rules.log_rules(cfg, contexts), now, known_tracks)
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    bad = reason.notna()
    rejections = [
        Rejection(r.source, int(r.row), str(reason.loc[i]), track_id=None if pd.isna(r.track_id) else str(r.track_id),
                  raw=str(r.timestamp) + " | " + " | ".join(str(getattr(r, c)) for c in ("user_id", "track_id", "device", "network")))
        for i, r in zip(df.index[bad], df.loc[bad].itertuples(index=False), strict=True)
    ]
    valid = df.loc[~bad, [*KEY, "utc_offset_min", "device", "network", "location", "age", "gender", "context", "feedback"]]
    return valid.sort_values(["event_timestamp", "user_id", "track_id"]).reset_index(drop=True), rejections


def read_lake(lake: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every stored event, in time order (empty frame when the lake is empty)."""
    parts = sorted(lake.glob("date=*/part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=list(columns or KEY))
    frame = pd.concat([pd.read_parquet(p, columns=list(columns) if columns else None) for p in parts],
                      ignore_index=True)
    return frame.sort_values("event_timestamp").reset_index(drop=True) if "event_timestamp" in frame else frame


def write_partitions(valid: pd.DataFrame, lake: Path) -> dict:
    """Append the events the lake does not hold yet; existing part files are never touched."""
    valid = valid.assign(date=valid["event_timestamp"].dt.strftime("%Y-%m-%d"))
    written, already, files = 0, 0, []
    for date, part in valid.groupby("date", sort=True):
        folder = lake / f"date={date}"
        existing = [pd.read_parquet(p, columns=list(KEY)) for p in sorted(folder.glob("part-*.parquet"))]
        if existing:
            seen = pd.concat(existing, ignore_index=True)
            fresh = part.merge(seen, on=list(KEY), how="left", indicator=True)
            fresh = fresh[fresh["_merge"] == "left_only"].drop(columns="_merge")
        else:
            fresh = part
        already += len(part) - len(fresh)
        if fresh.empty:
            continue
        fresh = fresh.drop(columns="date").sort_values(list(KEY)).reset_index(drop=True)
        digest = hashlib.sha256(pd.util.hash_pandas_object(fresh[list(KEY)], index=False).values.tobytes()).hexdigest()
        target = folder / f"part-{digest[:16]}.parquet"
        with atomic_path(target) as tmp:                    # readers never see half a file
            fresh.to_parquet(tmp, index=False)
        written += len(fresh)
        files.append(str(target))
    return {"events_written": written, "events_already_in_lake": already, "part_files_written": files}


def ingest(paths: Iterable[str | Path], lake: Path, cfg: LogsConfig, contexts: Sequence[str],
           now: pd.Timestamp | None = None, known_tracks: set[str] | None = None) -> Ingestion:
    raw, unreadable = read_drops(paths)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    valid, rejections = validate(raw, cfg, contexts, now, known_tracks)
    rejections = unreadable + rejections
    stored = write_partitions(valid, lake)
    reasons = pd.Series([r.reason.split(":")[0].split(" (")[0] for r in rejections], dtype="object")
    stats = {"rows_read": len(raw) + sum(r.row > 0 for r in unreadable), "rows_valid": len(valid),
             "rows_quarantined": len(rejections),
             "files_refused": {r.source: r.reason for r in unreadable if r.row == 0},
             "quarantine_reasons": {k: int(v) for k, v in reasons.value_counts().sort_index().items()},
             **{k: v for k, v in stored.items() if k != "part_files_written"},
             "part_files_written": len(stored["part_files_written"]),
             "users": int(valid["user_id"].nunique()), "tracks": int(valid["track_id"].nunique())}
    return Ingestion(valid, rejections, stats)
