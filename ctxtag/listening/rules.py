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
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ctxtag.common.arrow_text import string_spans
from ctxtag.common.io import UNDECODABLE
from ctxtag.config import LogsConfig
from ctxtag.listening.engine import Dialect

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
OFFSET = r"(?:Z|[+-][0-9][0-9]:?[0-9][0-9])$"
# the timestamps that parse: ISO 8601's extended form with a date, hours and minutes, optional
# seconds and fraction (digits past microseconds are cut), and the offset
YEARS = (1678, 2261)          # what a pandas timestamp can hold; any other year is no real time here
ISO_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})$"
ISO_NAMED = (r"^(?P<d>[0-9]{4}-[0-9]{2}-[0-9]{2})[T ](?P<hm>[0-9]{2}:[0-9]{2})"
             r"(?::(?P<s>[0-9]{2})(?:[.](?P<f>[0-9]{1,6})(?P<cut>[0-9]{0,3}))?)?(?P<off>Z|[+-][0-9]{2}:?[0-9]{2})$")


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


# --- the checks, twice: as SQL over a whole drop (ingestion, on DuckDB or Spark:
# ctxtag.listening.engine) and in Python on one value (the API, where an engine would cost
# milliseconds a request). tests/listening/test_rules.py holds the twins to the same answers.
WHITESPACE_CHARS = " \t\n\r\f\x0b"    # what strip() removes: ASCII whitespace, the same in Arrow and Python


def strip(text: str) -> str:
    return text.strip(WHITESPACE_CHARS)


def prepare(table: pa.Table) -> pa.Table:
    """The form the rules read, vectorised in Arrow (it runs in the reader, in-process beside
    DuckDB or inside Spark's tasks): text stripped (blank = missing), categories lower-cased, and
    the timestamp read as event_timestamp (UTC) and utc_offset_min (the listener's local offset).
    Other columns (row, source, ...) pass through."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        kind = COLUMNS[name].kind if name in COLUMNS else None
        if kind is not None and kind != "number":
            # each step only where some text needs it (a scan of the bytes): drops are nearly all
            # clean, and the three kernels on every text column were ~60% of prepare
            col = col.cast(pa.string())
            padded, empty, cased = _needs(col, kind == "category")
            col = pc.utf8_trim(col, characters=WHITESPACE_CHARS) if padded else col
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col) if padded or empty else col
            col = pc.utf8_lower(col) if cased else col
        out[name] = col
    if "timestamp" in out:
        out["event_timestamp"], out["utc_offset_min"], out["has_offset"] = _instants(out["timestamp"])
    return pa.table(out)


_SPACE = np.array([ord(c) for c in WHITESPACE_CHARS], dtype=np.uint8)


def _needs(col: pa.ChunkedArray | pa.Array, category: bool) -> tuple[bool, bool, bool]:
    """(some text begins or ends in whitespace, some text is empty, some text of a ``category``
    has a byte that lower-casing may change: A-Z or any byte not ASCII), read from the strings'
    offsets and bytes with a few passes NumPy vectorises. Null slots holding bytes count like
    text: at worst a step runs that changes nothing."""
    padded = empty = cased = False
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        if not len(chunk):
            continue
        bounds, own = string_spans(chunk)
        full = bounds[1:] > bounds[:-1]
        if not empty and not full.all():
            zero = ~full
            if chunk.null_count:          # a null's slot is empty too: only valid ones count
                zero &= chunk.is_valid().to_numpy(zero_copy_only=False)
            empty = bool(zero.any())
        # whitespace bytes are all at or below ' ': the ends are looked at only where one is
        if not padded and (own <= 32).any():
            ends = np.concatenate([own[bounds[:-1][full]], own[bounds[1:][full] - 1]])
            padded = bool(np.isin(ends, _SPACE).any())
        if category and not cased:
            cased = bool((own >= 0x80).any() or ((own - np.uint8(65)) < 26).any())   # uint8 wraps below 'A'
    return padded, empty, cased


def _instants(text: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """ISO 8601 text -> (UTC instant, offset minutes, whether it ends in an offset); the instant
    is null where the text does not parse, the offset null where it is not shaped like a timestamp.

    Nearly every row of a drop has one shape, ``YYYY-MM-DDTHH:MM:SS+HH:MM``: those rows are read
    as a grid of bytes (``_fixed``), with no regular expression and no per-field gathers; the
    others (other lengths, nulls, and 25 characters of another shape such as ``...00.1234Z``) go
    through the general reader (``_general``), and its answers are scattered back."""
    text = (text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text).cast(pa.large_string())
    n = len(text)
    sized = np.diff(string_spans(text)[0]) == FIXED_LENGTH
    if text.null_count:                          # Arrow lets a null's slot span bytes all the same
        sized &= text.is_valid().to_numpy(zero_copy_only=False)
    every = bool(sized.all())
    # Arrow's filter packs the chosen strings' bytes end to end: a grid with no per-byte gather
    rows = _grid(text if every else text.filter(pa.array(sized)))
    fits = _fixed_shape(rows)
    if every and fits.all():                     # the usual drop: nothing left for the general reader
        micros, real, offset = _fixed(rows)
        return _arrays(micros, real, offset, np.ones(n, dtype=bool), np.ones(n, dtype=bool))
    fast = np.zeros(n, dtype=bool)
    fast[sized] = fits
    micros, real, offset = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    shaped, has_off = fast.copy(), fast.copy()
    micros[fast], real[fast], offset[fast] = _fixed(rows[fits])
    rest = ~fast
    if rest.any():
        micros[rest], real[rest], offset[rest], shaped[rest], has_off[rest] = _general(text.filter(pa.array(rest)))
    return _arrays(micros, real, offset, shaped, has_off)


def _grid(text: pa.LargeStringArray) -> np.ndarray:
    """Strings of 25 bytes each as an n x 25 view of their bytes (Arrow keeps a string's bytes
    between its offsets, and the strings one after another)."""
    return string_spans(text)[1].reshape(-1, FIXED_LENGTH)


def _instants_general(text: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``_instants`` by the general reader alone (tests hold the fast path to it)."""
    text = (text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text).cast(pa.large_string())
    return _arrays(*_general(text))


def _arrays(micros: np.ndarray, real: np.ndarray, offset: np.ndarray, shaped: np.ndarray, has_off: np.ndarray
            ) -> tuple[pa.Array, pa.Array, pa.Array]:
    instant = pa.array(np.where(real, micros, 0), type=pa.int64(), mask=~real).cast(pa.timestamp("us", tz="UTC"))
    offsets = pa.array(np.where(shaped, offset, 0), type=pa.int32(), mask=~shaped)
    return instant, offsets, pa.array(has_off)


# the one shape nearly every real timestamp has: YYYY-MM-DDTHH:MM:SS+HH:MM (T or a space, + or -)
FIXED_LENGTH = 25
_FIXED_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
_FIXED_MARKS = ((4, b"-"), (7, b"-"), (10, b"T "), (13, b":"), (16, b":"), (19, b"+-"), (22, b":"))


def _fixed_shape(rows: np.ndarray) -> np.ndarray:
    """Which rows of an n x 25 byte grid have the fixed shape, a column at a time: numpy compares
    a column of n bytes faster than it reduces n short rows of 25."""
    fits = np.ones(len(rows), dtype=bool)
    for j in _FIXED_DIGITS:
        fits &= rows[:, j] - np.uint8(48) <= 9       # uint8 wraps: bytes below '0' come out large
    for j, marks in _FIXED_MARKS:
        fits &= (rows[:, j] == marks[0]) | (rows[:, j] == marks[-1])
    return fits


def _fixed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(micros, real, offset) of rows of the fixed shape: every field at its column."""
    def two(j: int) -> np.ndarray:
        return rows[:, j].astype(np.int32) * 10 + rows[:, j + 1] - 11 * 48

    om = two(23)
    offset = (44 - rows[:, 19].astype(np.int32)) * (two(20) * 60 + om)      # '+' is 43, '-' 45
    valid, micros = _civil(two(0) * 100 + two(2), two(5), two(8), two(11), two(14), two(17), offset, 0)
    return micros, valid & (om <= 59), offset


def _general(text: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(micros, real, offset, shaped, has_offset) of any text: the shape is checked by one regular
    expression, then the fields are read as bytes at their positions (the shape makes them ASCII
    digits), and the date and time checked field by field as Python's datetime does."""
    n = len(text)
    has_off = pc.fill_null(pc.match_substring_regex(text, pattern=OFFSET), False).to_numpy(zero_copy_only=False)
    shaped = pc.fill_null(pc.match_substring_regex(text, pattern=ISO_SHAPE), False).to_numpy(zero_copy_only=False)
    bounds, raw = string_spans(text, pad=32)      # reads a few past the last string's end stay in bounds
    start, end = bounds[:-1], bounds[1:]

    def at(first: np.ndarray, j: int) -> np.ndarray:
        """The byte at ``first + j`` of every string. Past a string's end it reads its
        neighbour's bytes, harmlessly: only shaped rows are kept, and for them every field read
        lies inside the string (the fraction's digits are counted first)."""
        return raw[np.maximum(first, 0) + j].astype(np.int32)

    def two(first: np.ndarray, j: int) -> np.ndarray:
        return (at(first, j) - 48) * 10 + at(first, j + 1) - 48

    # the offset at the end: Z, +HH:MM or +HHMM
    last6 = end - 6
    zulu = at(last6, 5) == ord("Z")
    colon = at(last6, 3) == ord(":")
    oh, om = np.where(colon, two(last6, 1), two(last6, 2)), two(last6, 4)
    sign = np.where(colon, at(last6, 0), at(last6, 1)) == ord("-")
    offset = np.where(zulu, 0, np.where(sign, -1, 1) * (oh * 60 + om))
    off_len = np.where(zulu, 1, np.where(colon, 6, 5))
    # YYYY-MM-DD?HH:MM[:SS[.fffffffff]]
    has_sec = at(start, 16) == ord(":")
    ss = np.where(has_sec, two(start, 17), 0)
    frac_len = np.where(has_sec & (at(start, 19) == ord(".")), (end - start) - off_len - 20, 0)
    frac = np.zeros(n, dtype=np.int64)
    for k in range(6):                               # microseconds: digits past the sixth are cut
        frac = frac * 10 + np.where(k < frac_len, at(start, 20 + k) - 48, 0)
    valid, micros = _civil(two(start, 0) * 100 + two(start, 2), two(start, 5), two(start, 8),
                           two(start, 11), two(start, 14), ss, offset, frac)
    return micros, shaped & valid & (zulu | (om <= 59)), offset, shaped, has_off


_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _civil(y: np.ndarray, mo: np.ndarray, d: np.ndarray, hh: np.ndarray, mi: np.ndarray, ss: np.ndarray,
           offset: np.ndarray, frac: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """(whether the local date and time are real, microseconds since the epoch in UTC): years
    within YEARS, 2026-02-29 or 24:00 no time, as Python's datetime has it."""
    # y % 4 == 0, y % 100 != 0, y % 400 == 0 without numpy's slow integer modulo (// is fast)
    leap = ((y & 3) == 0) & ((y // 100 * 100 != y) | (y // 400 * 400 == y))
    month_days = _MONTH_DAYS.take(mo - 1, mode="clip") + (leap & (mo == 2))
    valid = (y >= YEARS[0]) & (y <= YEARS[1]) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= month_days) \
        & (hh <= 23) & (mi <= 59) & (ss <= 59)
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    yy = y - (mo <= 2)
    era = np.floor_divide(yy, 400)
    yoe = yy - era * 400
    doy = (153 * (mo + np.where(mo > 2, -3, 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    days = days.astype(np.int64, copy=False)      # micros outgrow int32
    return valid, (days * 86400 + hh * 3600 + mi * 60 + ss - offset * 60) * 1_000_000 + frac


def _sql_broken(rule: Rule, d: Dialect, now: pd.Timestamp) -> str | None:
    """SQL true where a prepared row breaks ``rule`` (NULL counts as not broken, as a missing
    optional value breaks nothing but 'present'). None: checked elsewhere (see sql_reason)."""
    c = rule.column
    match rule.check:
        case "present":
            return f"{c} IS NULL"
        case "max_length":
            return f"length({c}) > {int(rule.high)}"
        case "has_offset":
            return f"{c} IS NOT NULL AND NOT has_offset"         # read by prepare
        case "parses":
            return f"{c} IS NOT NULL AND event_timestamp IS NULL"
        case "offset_range":
            return f"event_timestamp IS NOT NULL AND NOT (utc_offset_min BETWEEN {int(rule.low)} AND {int(rule.high)})"
        case "not_future":
            limit = (now + pd.Timedelta(seconds=rule.high)).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")
            return f"event_timestamp > {d.instant(limit)}"
        case "in_set":
            return f"NOT ({c} IN ({', '.join(d.lit(a) for a in rule.allowed)}))" if rule.allowed else f"{c} IS NOT NULL"
        case "between":
            num = f"TRY_CAST({c} AS DOUBLE)"
            return (f"{c} IS NOT NULL AND ({num} IS NULL OR isnan({num}) OR NOT ({num} >= {rule.low} AND {num} <= {rule.high}))")
        case "in_catalogue":
            return "catalogue_hit IS NULL"      # the caller joins the catalogue (see lake.validate)
        case "decodes" | "unique":
            # decodes: text an engine can hold is valid UTF-8, so the reader checks it
            # (ctxtag.listening.lake); unique: across files and the lake, per UTC date (lake.write_partitions)
            return None
    raise ValueError(f"unknown check {rule.check!r}")


def sql_reason(rules: Sequence[Rule], d: Dialect, now: pd.Timestamp, catalogue: bool) -> str:
    """SQL: the reason of the first rule a prepared row breaks (NULL: none)."""
    whens = []
    for rule in rules:
        if rule.check == "in_catalogue" and not catalogue:
            continue
        cond = _sql_broken(rule, d, now)
        if cond is not None:
            # a NULL condition is no match (SQL's CASE takes only TRUE), as wanted: a coalesce(…,
            # false) around each cost ~2x the whole CASE on DuckDB
            whens.append(f"WHEN {cond} THEN {d.lit(rule.reason)}")
    return "CASE " + " ".join(whens) + " END"


_UNDECODABLE = re.compile(UNDECODABLE)


def _missing(value: Any) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


@dataclass
class _One:
    value: Any                                 # normalised as ``prepare`` does
    instant: pd.Timestamp | None = None        # timestamp only: UTC, and the local offset
    offset: int | None = None


def parse_instant(text: str) -> tuple[pd.Timestamp | None, int | None]:
    """ISO 8601 text -> (the UTC instant, the UTC offset in minutes), as sql_prepare reads it:
    (None, offset) when it has an offset but is no real time, (None, None) without an offset."""
    m = _ISO.match(text)
    off = re.search(OFFSET, text)
    if off is None:
        return None, None
    o = off.group(0).replace(":", "")
    offset = 0 if o == "Z" else (-1 if o[0] == "-" else 1) * (int(o[1:3]) * 60 + int(o[3:5]))
    if m is None or (o != "Z" and int(o[3:5]) >= 60) or not YEARS[0] <= int(m["d"][:4]) <= YEARS[1]:
        return None, offset
    date, hm, sec, frac = m["d"], m["hm"], m["s"] or "00", m["f"] or ""
    try:
        local = pd.Timestamp(datetime.fromisoformat(f"{date} {hm}:{sec}" + (f".{frac.ljust(6, '0')}" if frac else "")))
    except ValueError:
        return None, offset
    return (local - pd.Timedelta(minutes=offset)).tz_localize("UTC"), offset


_ISO = re.compile(ISO_NAMED)


def _prepare_one(column: str, value: Any) -> _One:
    kind = COLUMNS[column].kind
    if kind == "number" or _missing(value):
        return _One(None if _missing(value) else value)
    text = strip(str(value)) or None
    one = _One(text.lower() if text and kind == "category" else text)
    if kind == "timestamp" and text:
        one.instant, one.offset = parse_instant(text)
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
                return v is not None and not rule.low <= float(strip(str(v))) <= rule.high   # NaN: not a number
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
