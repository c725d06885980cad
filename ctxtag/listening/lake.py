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

from ctxtag.common.io import collect_files
from ctxtag.common.quarantine import InputError, Rejection
from ctxtag.config import LogsConfig
from ctxtag.listening import rules
from ctxtag.listening.rules import KEY, OPTIONAL, REQUIRED


@dataclass
class Ingestion:
    valid: pd.DataFrame
    rejections: list[Rejection]
    stats: dict


def read_drops(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All CSV / parquet files under ``paths`` with their source file and row number."""
    files = collect_files(paths, lambda f: f.suffix in (".csv", ".parquet"), "listening-log")
    frames = []
    for f in files:
        if f.suffix == ".parquet":
            frame, first = pd.read_parquet(f), 1
        else:
            frame = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""],
                                encoding="utf-8", encoding_errors="surrogateescape")
            first = 2                                    # line 1 is the header
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise InputError(f, f"missing required column(s) {missing}; found {list(frame.columns)}")
        for col in OPTIONAL:
            if col not in frame.columns:
                frame[col] = None
        frame = frame[[*REQUIRED, *OPTIONAL]].astype(object)
        frame["source"], frame["row"] = str(f), np.arange(first, first + len(frame))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*REQUIRED, *OPTIONAL, "source", "row"])
    return pd.concat(frames, ignore_index=True)


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
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        fresh.to_parquet(tmp, index=False)
        tmp.replace(target)                                   # atomic: readers never see half a file
        written += len(fresh)
        files.append(str(target))
    return {"events_written": written, "events_already_in_lake": already, "part_files_written": files}


def ingest(paths: Iterable[str | Path], lake: Path, cfg: LogsConfig, contexts: Sequence[str],
           now: pd.Timestamp | None = None, known_tracks: set[str] | None = None) -> Ingestion:
    raw = read_drops(paths)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    valid, rejections = validate(raw, cfg, contexts, now, known_tracks)
    stored = write_partitions(valid, lake)
    reasons = pd.Series([r.reason.split(":")[0].split(" (")[0] for r in rejections], dtype="object")
    stats = {"rows_read": len(raw), "rows_valid": len(valid), "rows_quarantined": len(rejections),
             "quarantine_reasons": {k: int(v) for k, v in reasons.value_counts().sort_index().items()},
             **{k: v for k, v in stored.items() if k != "part_files_written"},
             "part_files_written": len(stored["part_files_written"]),
             "users": int(valid["user_id"].nunique()), "tracks": int(valid["track_id"].nunique())}
    return Ingestion(valid, rejections, stats)
