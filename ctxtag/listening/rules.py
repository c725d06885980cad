"""The listening-log rule table: what a listening event must satisfy, declared once.

Three consumers read this one table, so a row one of them rejects the others reject too:

- ingestion (ctxtag.listening.lake) evaluates it vectorised over a drop (``first_broken``);
- the HTTP API (ctxtag.serving.api) evaluates it on one request value (``check_value``);
- the Great Expectations logs gate (ctxtag.platform.gates) turns each rule into an expectation
  over the lake.

Each rule carries its reason: the quarantine reason at ingestion, the 422 message at the API,
the note on the expectation in the data docs. Where the three had drifted apart, the table
takes the strictest sensible rule:

- UTC offset within [-12:00, +14:00], the range of real time zones: only the GX suite had an
  offset range (a looser +-14 h); ingestion and the API took any offset Python could parse.
- no timestamp more than ``max_future_s`` ahead: ingestion and GX had it, the API did not.
- user_id at most 64 characters: only the API had a length limit.
- device and network required: the GX suite let them be null.
- categories match after stripping and lower-casing: ingestion folded case, the API did not.
- gender is checked for undecodable bytes like every other text column (ingestion skipped it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ctxtag.common.io import UNDECODABLE, undecodable
from ctxtag.config import LogsConfig

Kind = Literal["id", "timestamp", "category", "number", "text"]
Check = Literal["decodes", "present", "max_length", "has_offset", "parses", "offset_range", "not_future",
                "in_set", "between", "in_catalogue", "unique"]


@dataclass(frozen=True)
class Column:
    kind: Kind               # how a value is normalised: text kinds stripped, categories lower-cased
    required: bool = False


COLUMNS: dict[str, Column] = {
    "user_id": Column("id", required=True),
    "track_id": Column("id", required=True),
    "timestamp": Column("timestamp", required=True),
    "device": Column("category", required=True),
    "network": Column("category", required=True),
    "location": Column("text"),
    "age": Column("number"),
    "gender": Column("category"),
    "context": Column("category"),
    "feedback": Column("category"),
}
REQUIRED = tuple(c for c, col in COLUMNS.items() if col.required)
OPTIONAL = tuple(c for c, col in COLUMNS.items() if not col.required)
TEXT = tuple(c for c, col in COLUMNS.items() if col.kind != "number")
KEY = ("user_id", "track_id", "event_timestamp")     # one event: the same user, track and instant
MAX_ID_LENGTH = 64
UTC_OFFSET_MIN = (-12 * 60, 14 * 60)                 # Etc/GMT+12 .. Pacific/Kiritimati
# ISO 8601 with an explicit offset: the local time of day is part of the signal
OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"


@dataclass(frozen=True)
class Rule:
    column: str
    check: Check
    reason: str
    allowed: tuple[str, ...] = ()     # in_set
    low: float | None = None          # between, offset_range (minutes)
    high: float | None = None         # between, offset_range, max_length, not_future (seconds ahead)


def _in_set(column: str, allowed: Sequence[str], what: str | None = None) -> Rule:
    empty = "" if COLUMNS[column].required else ", or empty"
    return Rule(column, "in_set", f"unknown {what or column} (allowed: {', '.join(allowed)}{empty})",
                allowed=tuple(allowed))


def log_rules(cfg: LogsConfig, contexts: Sequence[str]) -> tuple[Rule, ...]:
    """Every rule, in the order that picks a row's reason: the first one it breaks."""
    lo, hi = UTC_OFFSET_MIN
    return (
        *(Rule(c, "decodes", "not valid UTF-8: undecodable bytes") for c in TEXT),
        *(Rule(c, "present", f"missing {c}") for c in REQUIRED),
        Rule("user_id", "max_length", f"user_id longer than {MAX_ID_LENGTH} characters", high=MAX_ID_LENGTH),
        Rule("timestamp", "has_offset",
             "timestamp has no time zone offset (need ISO 8601 like 2026-01-05T08:00:00+01:00)"),
        Rule("timestamp", "parses", "unparseable timestamp"),
        Rule("timestamp", "offset_range", "UTC offset out of range (time zones run from -12:00 to +14:00)",
             low=lo, high=hi),
        Rule("timestamp", "not_future", f"timestamp in the future (more than {cfg.max_future_s:g} s ahead)",
             high=cfg.max_future_s),
        _in_set("device", cfg.devices),
        _in_set("network", cfg.networks),
        _in_set("gender", cfg.genders),
        _in_set("context", contexts, "context label"),
        _in_set("feedback", cfg.feedback),
        Rule("age", "between", f"age not a number in [{cfg.min_age}, {cfg.max_age}]",
             low=cfg.min_age, high=cfg.max_age),
        Rule("track_id", "in_catalogue", "unknown track_id: not in the track catalogue"),
        Rule("timestamp", "unique", "duplicate event: same user, track and instant as an earlier row"),
    )


def find(rules: Sequence[Rule], column: str, check: Check) -> Rule | None:
    """The rule of ``column`` with this check (the API reads its allowed set and bounds)."""
    return next((r for r in rules if r.column == column and r.check == check), None)


# --- the checks, twice: vectorised over a frame (ingestion) and on one value (the API, where
# pandas would cost milliseconds a request). tests/listening/test_rules.py holds the twins to
# the same answers.
def _offset_minutes(stamps: pd.Series) -> pd.Series:
    off = stamps.str.extract(f"({OFFSET[:-1]})$", expand=False)
    sign = np.where((off.str[0] == "-").fillna(False).to_numpy(dtype=bool), -1, 1)
    digits = off.str.replace(":", "", regex=False).str.lstrip("+-")
    minutes = pd.to_numeric(digits.str[:2], errors="coerce") * 60 + pd.to_numeric(digits.str[2:4], errors="coerce")
    return (sign * minutes.where(off != "Z", 0)).astype("Int64")


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """The form the rules read: text stripped (blank = missing), categories lower-cased, and the
    timestamp read as event_timestamp (UTC) and utc_offset_min (the listener's local offset)."""
    df = raw.copy()
    for col in TEXT:
        if col in df:
            s = df[col].astype("string").str.strip()
            s = s.mask(s == "")
            df[col] = s.str.lower() if COLUMNS[col].kind == "category" else s
    if "timestamp" in df:
        has_tz = df["timestamp"].str.contains(OFFSET, regex=True).fillna(False).astype(bool)
        df["event_timestamp"] = pd.to_datetime(df["timestamp"].where(has_tz), utc=True, errors="coerce",
                                               format="ISO8601")
        df["utc_offset_min"] = _offset_minutes(df["timestamp"].fillna(""))
    return df


@dataclass
class _Rows:
    df: pd.DataFrame                   # prepared
    now: pd.Timestamp
    known_tracks: set[str] | None
    ok: pd.Series                      # rows that broke no earlier rule


def _broken(rule: Rule, rows: _Rows) -> pd.Series:
    """True where a row breaks ``rule`` (a missing optional value breaks nothing but 'present')."""
    df, col = rows.df, rows.df[rule.column]
    nothing = pd.Series(False, index=df.index)
    match rule.check:
        case "decodes":
            return undecodable(col)
        case "present":
            return col.isna()
        case "max_length":
            return col.str.len() > rule.high
        case "has_offset":
            return col.notna() & ~col.str.contains(OFFSET, regex=True)
        case "parses":
            return col.notna() & df["event_timestamp"].isna()
        case "offset_range":
            return df["event_timestamp"].notna() & ~df["utc_offset_min"].between(rule.low, rule.high)
        case "not_future":
            return df["event_timestamp"] > rows.now + pd.Timedelta(seconds=rule.high)
        case "in_set":
            return col.notna() & ~col.isin(rule.allowed)
        case "between":
            num = pd.to_numeric(col, errors="coerce")
            return col.notna() & (num.isna() | (num < rule.low) | (num > rule.high))
        case "in_catalogue":
            return nothing if rows.known_tracks is None else col.notna() & ~col.isin(rows.known_tracks)
        case "unique":                 # among rows that are otherwise valid, the first occurrence wins
            if not set(KEY) <= set(df):
                return nothing
            ok = rows.ok
            return ok & df[ok].duplicated(list(KEY), keep="first").reindex(df.index, fill_value=False)
    raise ValueError(f"unknown check {rule.check!r}")


def first_broken(df: pd.DataFrame, rules: Sequence[Rule], now: pd.Timestamp,
                 known_tracks: set[str] | None = None) -> pd.Series:
    """Per row of a ``prepare``d frame, the reason of the first rule it breaks (<NA>: none)."""
    reason = pd.Series(pd.NA, index=df.index, dtype="object")
    for rule in rules:
        broken = _broken(rule, _Rows(df, now, known_tracks, reason.isna())).fillna(False).astype(bool)
        reason[broken & reason.isna()] = rule.reason
    return reason


_UNDECODABLE = re.compile(UNDECODABLE)


def _missing(value: Any) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


@dataclass
class _One:
    value: Any                                 # normalised as ``prepare`` does
    instant: pd.Timestamp | None = None        # timestamp only: UTC, and the local offset
    offset: int | None = None


def _prepare_one(column: str, value: Any) -> _One:
    kind = COLUMNS[column].kind
    if kind == "number" or _missing(value):
        return _One(None if _missing(value) else value)
    text = str(value).strip() or None
    one = _One(text.lower() if text and kind == "category" else text)
    m = re.search(f"({OFFSET[:-1]})$", text or "") if kind == "timestamp" else None
    if m:
        instant = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        one.instant = None if pd.isna(instant) else instant
        off = m.group(1).replace(":", "")
        one.offset = 0 if off == "Z" else (-1 if off[0] == "-" else 1) * (int(off[1:3]) * 60 + int(off[3:5]))
    return one


def _breaks(rule: Rule, one: _One, now: pd.Timestamp) -> bool:
    """``_broken`` for one value; rules about other rows or another dataset never apply."""
    v = one.value
    match rule.check:
        case "decodes":
            return isinstance(v, str) and _UNDECODABLE.search(v) is not None
        case "present":
            return v is None
        case "max_length":
            return v is not None and len(v) > rule.high
        case "has_offset":
            return v is not None and re.search(OFFSET, v) is None
        case "parses":
            return v is not None and one.instant is None
        case "offset_range":
            return one.instant is not None and not rule.low <= one.offset <= rule.high
        case "not_future":
            return one.instant is not None and one.instant > now + pd.Timedelta(seconds=rule.high)
        case "in_set":
            return v is not None and v not in rule.allowed
        case "between":
            try:
                return v is not None and not rule.low <= float(v) <= rule.high     # NaN: not a number
            except (TypeError, ValueError):
                return True
        case "in_catalogue" | "unique":
            return False
    raise ValueError(f"unknown check {rule.check!r}")


def check_value(rules: Sequence[Rule], column: str, value: Any, now: pd.Timestamp) -> tuple[Any, str | None]:
    """One value of one column through the same rules: its normalised form (None when missing)
    and the reason of the first rule it breaks, or None."""
    one = _prepare_one(column, value)
    reason = next((r.reason for r in rules if r.column == column and _breaks(r, one, now)), None)
    return one.value, reason
