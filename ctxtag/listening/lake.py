"""Listening-log ingestion: validated, deduplicated, date-partitioned, immutable.

Rows of (user_id, track_id, timestamp with time zone, device, network, [location, age, gender,
context, feedback]) arrive as CSV or parquet drops. A row that breaks a rule goes to the
quarantine with its file, row and reason, and the others go on. Valid events are stored by UTC
date as ``date=YYYY-MM-DD/part-<content hash>.parquet``: a partition file is never rewritten,
late or out-of-order events for a date land in a new part, and an event already in the lake
(same user, track and instant) is not written again — so re-ingesting the same drop is a no-op.

Incremental: the lake records the drops it has taken in (``_ingested.jsonl``: their sha256) under
a key of everything else that decides a drop's outcome (the rule settings, the catalogue, this
code). A later run skips them, so the daily ingest reads the day's drop, not every drop kept; a
drop whose bytes changed, or any drop once the key changed, is read again. A drop with rows refused
as in the future is not recorded: on a later day those rows may be valid. Hashing is skipped for
drops whose size and mtime match a stat cache beside the lake.

It streams, so a batch of any size runs in bounded memory: each drop is read alone (the one
reader, ctxtag.common.text_rows), checked by the rule table's SQL (ctxtag.listening.rules) on the
data-plane engine (ctxtag.listening.engine: DuckDB here, Spark beyond one machine) and staged;
every FLUSH_ROWS staged rows, each UTC date among them is de-duplicated against the staged rows,
this run's earlier flushes and the lake, and written. Only quarantined rows ever become Python
objects.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import reduce
from itertools import groupby
from operator import xor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ctxtag.common import text_rows
from ctxtag.common.io import (
    atomic_path,
    collect_files,
    file_sha256,
    process_alive,
    source_digest,
    undecodable,
)
from ctxtag.common.progress import progress
from ctxtag.common.quarantine import InputError, Rejection
from ctxtag.common.text_rows import UNREADABLE, headerless, read_csv_rows, refused
from ctxtag.common.value_kinds import kinds
from ctxtag.config import DataPlaneConfig, LogsConfig
from ctxtag.listening import rules
from ctxtag.listening.engine import Engine, open_engine
from ctxtag.listening.rules import KEY, OPTIONAL, REQUIRED

LAKE_COLUMNS = [*KEY, "utc_offset_min", "device", "network", "location", "age", "gender", "context", "feedback"]
TEXT_COLUMNS = [*REQUIRED, *OPTIONAL]
# rows checked in one query: the catalogue join rebuilds its hash table each query (at 4.2M
# tracks, 4M rows rather than 2M took 100M events from 230 s to 212 s, for +0.8 GB)
BATCH_ROWS = 4_000_000
# rows staged before their dates are written: the staged batch stays in the engine's memory (at
# 100M events a whole-run batch spilled tens of GB and every date's queries read it back)
FLUSH_ROWS = 8_000_000
_DUPLICATE = next(r.reason for r in rules.log_rules(LogsConfig(), ()) if r.check == "unique")
MANIFEST = "_ingested.jsonl"    # in the lake: the drops taken in, under which key (see the docstring)


@dataclass
class Ingestion:
    rejections: list[Rejection]
    stats: dict
    read: list[str] = field(default_factory=list)       # the drops read this run (the others were skipped)
    skipped: list[str] = field(default_factory=list)    # drops recorded as ingested under the same key


def sorted_catalogue(known_tracks: set[str] | pa.Array | None) -> pa.Array | None:
    """The catalogue's track ids, each once, in order, as Arrow: sorted in C++ (a Python sort of
    10M ids took ~4x as long), for the engine's table and the ingestion key alike."""
    if known_tracks is None:
        return None
    ids = pc.unique(known_tracks) if isinstance(known_tracks, pa.Array) else pa.array(list(known_tracks), type=pa.string())
    return ids.take(pc.sort_indices(ids))


def ingestion_key(cfg: LogsConfig, contexts: Sequence[str], catalogue: pa.Array | None) -> str:
    """Everything besides a drop's bytes that decides what becomes of its rows (``catalogue``:
    ``sorted_catalogue``'s array, hashed as its offsets and bytes)."""
    import hashlib

    h = hashlib.sha256(json.dumps([asdict(cfg), list(contexts)], sort_keys=True, default=str).encode())
    h.update(source_digest((rules, sys.modules[__name__], text_rows)).encode())
    h.update(b"catalogue" if catalogue is not None else b"no catalogue")
    for buf in (catalogue.buffers()[1:] if catalogue is not None else ()):     # no nulls: no validity
        h.update(memoryview(buf))
    return h.hexdigest()[:16]


def _manifest(lake: Path, key: str) -> set[str]:
    """The sha256 of the drops the lake took in under ``key`` (records of another key are stale:
    those drops are read again). Content only — no names or times — so the lake's own bytes (a DVC
    output others depend on) change when a drop is taken in, never because one was touched."""
    path = lake / MANIFEST
    if not path.exists():
        return set()
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["sha256"] for r in records if r.get("key") == key}


def _stat_file(lake: Path) -> Path:
    """Beside the lake, outside it: which file had which sha256 at which size and mtime, so that a
    drop unchanged since is skipped without reading it (a cache: rebuilt by hashing when absent)."""
    return lake.parent / f".{lake.name}.stat.json"


def _pending(files: list[Path], taken: set[str], stats: dict[str, dict]) -> tuple[dict[Path, str | None], list[Path]]:
    """(drops to read with their sha256, drops to skip): a drop whose size and mtime match
    ``stats`` has the sha256 recorded there, and is skipped when the lake took it in; the others
    map to None: the reader hashes them (``_read_ahead``), on its threads, beside the engine's
    work (hashing 100M events' drops first took 5 s warm, 14 s from disk, on one core)."""
    read, skip = {}, []
    for f in files:
        try:
            st = f.stat()
        except OSError:                 # gone or barred: the reader refuses it, with the reason
            read[f] = None
            continue
        known = stats.get(str(f), {})
        sha = known["sha256"] if (known.get("size"), known.get("mtime_ns")) == (st.st_size, st.st_mtime_ns) else None
        if sha in taken:
            skip.append(f)
        else:
            read[f] = sha
    return read, skip


def _record(lake: Path, key: str, taken: set[str]) -> None:
    """Rewrite the manifest (atomically, after the lake's parts), sorted: the same drops, the same bytes."""
    with atomic_path(lake / MANIFEST) as tmp:
        tmp.write_text("".join(json.dumps({"key": key, "sha256": sha}) + "\n" for sha in sorted(taken)))


def is_drop(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz", ".parquet"))


# --- reading: one drop -> an Arrow table of text columns, ``row`` and ``source`` -------------
def _read_drop(path: Path) -> tuple[pa.Table, list[Rejection]]:
    """One drop file as text columns with row numbers; what cannot be read is rejected: CSV
    records that do not parse, parquet cells of the wrong kind, text that is not UTF-8."""
    if path.name.lower().endswith(".parquet"):
        frame = pd.read_parquet(path)
        for col in frame.columns[frame.dtypes.map(lambda t: isinstance(t, pd.DatetimeTZDtype))]:
            frame[col] = frame[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")   # the offset survives as text
        frame["row"] = np.arange(1, len(frame) + 1)
        frame, malformed = _typed_cells(frame, path)
    else:
        frame, malformed = read_csv_rows(path, arrow=True)
    names = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    missing = [c for c in REQUIRED if c not in names]
    if missing and not (isinstance(frame, pd.DataFrame) and headerless(frame)):
        raise InputError(path, f"missing required column(s) {missing}; found {[c for c in names if c != 'row']}")
    if isinstance(frame, pd.DataFrame):
        frame, bad = _undecodable(frame, path)
        malformed += bad
        frame = pa.table({c: pa.array(frame[c].astype("string") if c in frame else [None] * len(frame),
                                      type=pa.string(), from_pandas=True) for c in TEXT_COLUMNS}
                         | {"row": pa.array(frame["row"].to_numpy(dtype=np.int64))})
    else:                                   # Arrow's reader: valid UTF-8, text columns already
        n = frame.num_rows
        frame = pa.table({c: frame.column(c) if c in names else pa.nulls(n, pa.string()) for c in TEXT_COLUMNS}
                         | {"row": frame.column("row").cast(pa.int64())})
    return frame, malformed


def _typed_cells(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[Rejection]]:
    """Parquet carries types: a cell that is a list, a map, bytes or a boolean is no id, category
    or age, and is rejected before anything turns it into text ("[1]" is not a user)."""
    reason = pd.Series(None, index=frame.index, dtype=object)
    for col in [c for c in TEXT_COLUMNS if c in frame.columns]:
        found = kinds(frame[col])
        wrong = ~found.isin(["text", "integer", "number", "missing"]) & reason.isna()
        reason[wrong] = f"{col} must be text or a number, not " + found[wrong]
    bad = reason.notna()
    rejections = [Rejection(str(path), int(row), str(why), raw=str(frame.loc[i, [c for c in frame.columns if c != "row"]].to_dict()))
                  for i, row, why in zip(frame.index[bad], frame.loc[bad, "row"], reason[bad], strict=True)]
    frame = frame.loc[~bad].copy()
    for col in [c for c in TEXT_COLUMNS if c in frame.columns]:       # numbers as text, as a CSV has them
        frame[col] = frame[col].astype("string")
    return frame, rejections


_NOT_UTF8 = next(r.reason for r in rules.log_rules(LogsConfig(), ()) if r.check == "decodes")


def _undecodable(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[Rejection]]:
    """The rule table's first rule, at the reader: text holding bytes that were not UTF-8 cannot
    reach an engine (it holds UTF-8 only), so such a row is quarantined here."""
    cols = [c for c in TEXT_COLUMNS if c in frame.columns]
    if frame.empty or not cols:
        return frame, []
    bad = np.zeros(len(frame), dtype=bool)
    for c in cols:
        bad |= undecodable(frame[c]).to_numpy()
    if not bad.any():
        return frame, []
    rejections = [Rejection(str(path), int(r), _NOT_UTF8, raw=",".join("" if pd.isna(v) else str(v) for v in vals))
                  for r, vals in zip(frame.loc[bad, "row"], frame.loc[bad, cols].itertuples(index=False), strict=True)]
    return frame.loc[~bad], rejections


# --- the rule table as SQL, on the engine -----------------------------------------------------
def _checked_sql(engine: Engine, source: str, cfg: LogsConfig, contexts: Sequence[str], now: pd.Timestamp,
                 catalogue: bool) -> str:
    """Every row of ``source`` (prepared: rules.prepare) with the first rule it breaks (``reason``)
    and its UTC date."""
    d = engine.dialect
    table = rules.log_rules(cfg, contexts)
    # the catalogue holds each id once (_register_catalogue): a DISTINCT here cost ~0.5 s a batch
    # against 4.2M tracks, more than the join
    join = "LEFT JOIN (SELECT track_id AS catalogue_hit FROM catalogue) c ON p.track_id = c.catalogue_hit" \
        if catalogue else ""
    return f"""
        SELECT p.*, {rules.sql_reason(table, d, now, catalogue)} AS reason, {d.day_text('p.event_timestamp')} AS date
        FROM {source} p {join}"""


def _rejections(engine: Engine, sql: str, sources: Sequence[str]) -> list[Rejection]:
    """The quarantined rows of ``sql``; ``file`` numbers a drop in ``sources``."""
    cols = ", ".join(f"coalesce({c}, '')" for c in ("timestamp", "user_id", "track_id", "device", "network"))
    bad = engine.arrow(f"SELECT file, row, reason, track_id, concat_ws(' | ', {cols}) AS raw FROM ({sql}) q "
                       f"WHERE reason IS NOT NULL").to_pylist()
    return [Rejection(sources[r["file"]], int(r["row"]), r["reason"], track_id=r["track_id"], raw=r["raw"]) for r in bad]


def _register_catalogue(engine: Engine, catalogue: pa.Array | set[str] | None) -> bool:
    """The catalogue's ids as the table ``catalogue``, each once (a set, or sorted_catalogue's array)."""
    if catalogue is None:
        return False
    engine.table("catalogue", pa.table({"track_id": catalogue}))
    return True


@dataclass
class _Drop:
    """What a reader thread made of one drop."""

    table: pa.Table | None = None           # prepared rows (rules.prepare)
    malformed: list[Rejection] = field(default_factory=list)
    error: Exception | None = None          # why it is unreadable
    hashed: dict | None = None              # its size, mtime and sha256, where the reader hashed it
    taken: bool = False                     # the lake took in these bytes already: not read


def _read_ahead(files: dict[Path, str | None], taken: set[str], depth: int = 2) -> Iterator[tuple[Path, _Drop]]:
    """Each drop of ``files`` (as ``_pending`` gives them) in order, the next ``depth`` hashed
    where needed, read and prepared on threads meanwhile (hashlib, Arrow and NumPy release the
    GIL), so reading overlaps the engine's work on the batch before and memory stays bounded."""
    def one(f: Path) -> _Drop:
        drop = _Drop()
        try:
            if files[f] is None:
                st = f.stat()
                drop.hashed = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(f)}
                if drop.hashed["sha256"] in taken:
                    drop.taken = True
                    return drop
            table, drop.malformed = _read_drop(f)
            drop.table = rules.prepare(table)
        except UNREADABLE as exc:
            drop.error = exc
        return drop

    order = list(files)
    with ThreadPoolExecutor(max_workers=depth) as pool:
        queue = deque(pool.submit(one, f) for f in order[:depth])
        for i, f in enumerate(order):
            result = queue.popleft().result()
            if i + depth < len(order):
                queue.append(pool.submit(one, order[i + depth]))
            yield f, result


def _with_file(table: pa.Table, file_no: int) -> pa.Table:
    """A prepared drop with its file's number (its name is looked up by number: a name on every
    row cost a string copy a row through the engine)."""
    return table.append_column("file", pa.array(np.full(table.num_rows, file_no, dtype=np.int64)))


def checked_rows(raw: pd.DataFrame, cfg: LogsConfig, contexts: Sequence[str], now: pd.Timestamp,
                 known_tracks: set[str] | None = None, engine: Engine | None = None) -> pd.DataFrame:
    """Every row of a text frame (``source``, ``row`` and the log columns) as the rules read it,
    with ``reason``: the first rule it breaks (<NA>: none; duplicates are not looked for here).
    In the frame's order. For tests and tools; ingest streams the same SQL over the drops."""
    own = engine is None
    engine = engine or open_engine(DataPlaneConfig(memory_limit="1GB"))
    try:
        frame = raw.copy()
        for c in TEXT_COLUMNS:
            frame[c] = frame[c].astype("string") if c in frame else pd.Series(pd.NA, index=frame.index, dtype="string")
        frame, undecoded = _undecodable(frame, Path(str(raw["source"].iat[0]) if len(raw) else "-"))
        table = rules.prepare(pa.table(
            {c: pa.array(frame[c], type=pa.string(), from_pandas=True) for c in TEXT_COLUMNS}
            | {"row": pa.array(frame["row"].to_numpy(dtype=np.int64))}))
        table = table.append_column("source", pa.array(frame["source"].astype(str).tolist(), type=pa.string())) \
            .append_column("file", pa.array(np.zeros(len(frame), dtype=np.int64)))
        engine.table("raw_rows", table)
        got = engine.arrow(_checked_sql(engine, "raw_rows", cfg, contexts, now,
                                        _register_catalogue(engine, known_tracks)) + " ORDER BY row").to_pandas()
        if undecoded:
            got = pd.concat([got, pd.DataFrame({"row": [r.row for r in undecoded], "reason": [r.reason for r in undecoded],
                                                "source": [r.source for r in undecoded]})])
        return _lake_types(got.sort_values("row").reset_index(drop=True))
    finally:
        if own:
            engine.close()


def validate(raw: pd.DataFrame, cfg: LogsConfig, contexts: Sequence[str], now: pd.Timestamp,
             known_tracks: set[str] | None = None) -> tuple[pd.DataFrame, list[Rejection]]:
    """The rule table over one text frame, duplicates included: (valid events, rejections)."""
    rows = checked_rows(raw, cfg, contexts, now, known_tracks)
    ok = rows["reason"].isna()
    dup = ok & rows[ok].duplicated(list(KEY), keep="first").reindex(rows.index, fill_value=False)
    rows.loc[dup, "reason"] = _DUPLICATE
    bad = rows["reason"].notna()
    rejections = [Rejection(str(s), int(r), str(why)) for s, r, why in
                  zip(rows.loc[bad, "source"], rows.loc[bad, "row"], rows.loc[bad, "reason"], strict=True)]
    valid = rows.loc[~bad, LAKE_COLUMNS]
    return valid.sort_values(["event_timestamp", "user_id", "track_id"]).reset_index(drop=True), rejections


# --- ingestion: stage per drop, then de-duplicate and write per UTC date ----------------------
def ingest(paths: Iterable[str | Path], lake: Path, cfg: LogsConfig, contexts: Sequence[str],
           now: pd.Timestamp | None = None, known_tracks: set[str] | pa.Array | None = None,
           data_plane: DataPlaneConfig | None = None, show_progress: bool = False,
           incremental: bool = True) -> Ingestion:
    """``known_tracks``: the catalogue's ids (``common.io.catalogue_ids``), None for no catalogue check;
    ``incremental``: skip the drops the lake's manifest records under the same key."""
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    lake = Path(lake)
    lake.mkdir(parents=True, exist_ok=True)
    for old in lake.parent.glob(f".staging-{lake.name}-*"):   # a killed run's: nothing in it was published
        if not process_alive(old.name.rsplit("-", 1)[-1]):
            shutil.rmtree(old, ignore_errors=True)
    staging = lake.parent / f".staging-{lake.name}-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    engine = open_engine(data_plane, temp_dir=staging / "spill")
    start = time.perf_counter()
    try:
        ids = sorted_catalogue(known_tracks)
        catalogue = _register_catalogue(engine, ids)
        key = ingestion_key(cfg, contexts, ids)
        del ids
        taken = _manifest(lake, key) if incremental else set()
        stat_file = _stat_file(lake)
        try:
            stats = json.loads(stat_file.read_text())
        except (FileNotFoundError, ValueError):
            stats = {}
        drops = list(dict.fromkeys(collect_files(paths, is_drop, "listening-log")))     # a drop named twice is one drop
        shas, skipped = _pending(drops, taken, stats)
        files = list(shas)
        sources = [str(f) for f in files]          # a staged row names its drop by number: ``file``
        checked = _checked_sql(engine, "drop_rows", cfg, contexts, now, catalogue)
        writer = _DateWriter(engine, lake, sources, show_progress)
        malformed_rows, ruled, rows_read, unreadable, pending = [], [], 0, [], []
        staged_rows = 0

        def check(tables: list[pa.Table]) -> None:
            """The rules over a batch of drops: one query a batch, so small files cost no more;
            every row is staged with its reason (one pass)."""
            nonlocal staged_rows
            engine.table("drop_rows", pa.concat_tables(tables))
            engine.append("staged", _staged_sql(engine, checked), fresh=not staged_rows)
            staged_rows += sum(t.num_rows for t in tables)
            tables.clear()

        def flush() -> None:
            """The staged rows' quarantine, then their dates into the lake: every FLUSH_ROWS, so
            the staged batch stays within the engine's memory whatever the run's size. (A date
            split by a flush gets a part each side, the second checked against the first for
            copies: at 100M events that cost about what carrying the open dates over did.)"""
            nonlocal staged_rows
            ruled.extend(_rejections(engine, "SELECT * FROM staged", sources))
            writer.write_staged()
            staged_rows = 0

        read = _read_ahead(dict(shas), taken)        # its own copy: the loop fills in ``shas``
        for file_no, (f, drop) in enumerate(
                progress(read, total=len(files), description="checking drops") if show_progress else read):
            if drop.hashed is not None:
                stats[str(f)] = drop.hashed
                shas[f] = drop.hashed["sha256"]
            if drop.taken:
                skipped.append(f)
                continue
            if drop.error is not None:
                unreadable.append(refused(f, drop.error))
                continue
            table = drop.table
            rows_read += table.num_rows + len(drop.malformed)
            malformed_rows += drop.malformed
            if table.num_rows:
                pending.append(_with_file(table, file_no))
            if sum(t.num_rows for t in pending) >= BATCH_ROWS:
                check(pending)
                if staged_rows >= FLUSH_ROWS:
                    flush()
        if pending:
            check(pending)
        if staged_rows:
            flush()
        checked_s = time.perf_counter() - start
        # a drop the reader found the lake had taken in is skipped, as if the stat cache knew it
        skipped.sort(key={f: i for i, f in enumerate(drops)}.__getitem__)
        gone = set(skipped)
        read_now = [str(f) for f in files if f not in gone]
        # in the order of one whole-run batch, however many flushes: the rules' rejections by
        # (file name, row), then the later copies by (date, file, row)
        rejections = malformed_rows + sorted(ruled, key=lambda r: (r.source, r.row)) + writer.copies()
        stored = writer.stats()
        # recorded once their events are in the lake: a run killed before this reads them again
        # (their events then already in the lake); not the refused files, nor drops with future rows
        future = next(r.reason for r in rules.log_rules(cfg, contexts) if r.check == "not_future")
        untaken = {r.source for r in unreadable} | {r.source for r in rejections if r.reason.startswith(future)}
        _record(lake, key, taken | {sha for f, sha in shas.items() if sha is not None and str(f) not in untaken})
        with atomic_path(stat_file) as tmp:
            tmp.write_text(json.dumps(stats, sort_keys=True))
    finally:
        engine.close()
        shutil.rmtree(staging, ignore_errors=True)
    rejections = unreadable + rejections
    reasons = pd.Series([r.reason.split(":")[0].split(" (")[0] for r in rejections], dtype="object")
    stats = {"rows_read": rows_read + sum(r.row > 0 for r in unreadable),
             "rows_valid": stored.pop("rows_valid"),
             "rows_quarantined": len(rejections),
             "files_refused": {r.source: r.reason for r in unreadable if r.row == 0},
             "quarantine_reasons": {k: int(v) for k, v in reasons.value_counts().sort_index().items()},
             **stored, "drops_read": len(read_now), "drops_already_ingested": len(skipped),
             "engine": type(engine).__name__.lower()}
    seconds = time.perf_counter() - start
    # timings go to the log, not the stats: these are DVC metrics, diffed between runs
    print(f"ingested {stats['rows_read']:,} rows of {len(read_now)} drop(s) ({len(skipped)} already ingested) in {seconds:.1f} s ({stats['rows_read'] / max(seconds, 1e-9):,.0f}"
          f" rows/s; checking {checked_s - writer.seconds:.1f} s, writing dates {writer.seconds + seconds - checked_s:.1f} s) on {stats['engine']}",
          file=sys.stderr)
    return Ingestion(rejections, stats, read_now, [str(f) for f in skipped])


def _staged_sql(engine: Engine, checked: str) -> str:
    """What ingest keeps of a checked batch: the lake's columns, where each row came from, its
    reason and UTC date; the raw timestamp text only on quarantined rows (the quarantine shows
    it; ~25 bytes a row otherwise copied for nothing); and on valid rows the key's 64-bit hash,
    computed once: XOR-ed it names a part, grouped it finds copies without grouping by text."""
    return (f"SELECT {', '.join([*LAKE_COLUMNS, 'row', 'file', 'reason', 'date'])}, CASE WHEN reason IS NOT NULL THEN timestamp END AS timestamp, "
            f"CASE WHEN reason IS NULL THEN {_key_hash(engine)} END AS h FROM ({checked}) q")


class _DateWriter:
    """The staged rows of each UTC date into the lake, a flush at a time. Per date: the first of
    each (user, track, instant) that the lake does not hold yet goes to a new part; later copies
    are quarantined as duplicates — copies within the flush, and copies of events that an earlier
    flush of this run wrote or found in the lake (so the quarantine does not depend on where
    flushes fall); a first copy of an event the lake held before this run counts as already
    there. The engine spills past its memory limit; the lake is read and written a date at a time."""

    def __init__(self, engine: Engine, lake: Path, sources: list[str], show_progress: bool):
        self.engine, self.lake, self.sources, self.show_progress = engine, lake, sources, show_progress
        self.written_parts: set[Path] = set()
        self.met: set[str] = set()          # dates with events an earlier flush found in the lake (table ``met``)
        self.found: list[tuple[str, int, int, Rejection]] = []     # (date, file, row, the later copy)
        self.valid = self.written = self.already = 0
        self.flushes, self.seconds = 0, 0.0

    def write_staged(self) -> None:
        start = time.perf_counter()
        e = self.engine
        valid_rows = "SELECT * FROM staged WHERE reason IS NULL"
        # one pass for every date: its rows (copies too) and the XOR of their key hashes; for a
        # date the lake holds nothing of yet (the common case), less the copies, that is the count
        # and name of the part to write. Drops come a day a file, so each date's rows sit together
        # in the staged table and the per-date queries skip the rest by its zone maps (no sort of
        # the whole batch, which spilled at 100M events)
        per_date = {d: (n, h) for d, n, h in e.rows(f"SELECT date, count(*), bit_xor(h) FROM ({valid_rows}) v GROUP BY date")}
        for table, column in (("seen_users", "user_id"), ("seen_tracks", "track_id")):
            e.append(table, f"SELECT DISTINCT {column} FROM ({valid_rows}) v", fresh=not self.flushes)
        self.flushes += 1
        dates = sorted(per_date)
        for date in progress(dates, total=len(dates), description="writing dates") if self.show_progress else dates:
            self._write_date(date, *per_date[date])
        self.seconds += time.perf_counter() - start

    def _write_date(self, date: str, n: int, digest: int | None) -> None:
        e = self.engine
        folder = self.lake / f"date={date}"
        existing = sorted(folder.glob("part-*.parquet"))
        # an event's key holds its instant, so its copies all fall on one date: de-duplicate per
        # date. Copies share a key hash: group the hashes (an integer GROUP BY, ~3x cheaper than
        # one by the text key), then rank only the rows of hashes seen twice by their exact key;
        # the first copy (by file, row) is kept
        day = f"SELECT * FROM staged WHERE reason IS NULL AND date = {e.dialect.lit(date)}"
        e.materialize("twice", f"SELECT h FROM ({day}) d GROUP BY h HAVING count(*) > 1")
        (n_twice,) = e.rows("SELECT count(*) FROM twice")[0]
        fresh, dropped = day, []
        if n_twice:
            e.materialize("later", f"SELECT file, row, track_id, h FROM (SELECT file, row, track_id, h, "
                                   f"row_number() OVER (PARTITION BY {', '.join(KEY)} ORDER BY file, row) AS k "
                                   f"FROM ({day}) d WHERE h IN (SELECT h FROM twice)) c WHERE k > 1")
            dropped += e.rows("SELECT file, row, track_id, h FROM later ORDER BY file, row")
            fresh = f"SELECT * FROM ({day}) d WHERE NOT EXISTS (SELECT 1 FROM later l WHERE l.file = d.file AND l.row = d.row)"
        # copies of events an earlier flush of this run wrote, or found already in the lake
        mine = [p for p in existing if p in self.written_parts]
        if mine or date in self.met:
            seen = []
            if mine:
                e.parquet("mine", mine)
                seen.append(f"EXISTS (SELECT 1 FROM mine m WHERE {_same_key('m', 'd')})")
            if date in self.met:
                seen.append(f"EXISTS (SELECT 1 FROM met m WHERE m.date = {e.dialect.lit(date)} AND {_same_key('m', 'd')})")
            same = f"({' OR '.join(seen)})"
            dropped += e.rows(f"SELECT file, row, track_id, h FROM ({fresh}) d WHERE {same} ORDER BY file, row")
            fresh = f"SELECT * FROM ({fresh}) d WHERE NOT {same}"
        self.found += [(date, f, r, Rejection(self.sources[f], int(r), _DUPLICATE, track_id=t)) for f, r, t, _ in dropped]
        # XOR is its own inverse: the copies' hashes drop out
        n, digest = n - len(dropped), reduce(xor, (h for *_, h in dropped), digest or 0)
        older = [p for p in existing if p not in self.written_parts]
        n_fresh = n
        if older:                                           # events the lake held before are not written again
            e.parquet("held", older)
            held = f"EXISTS (SELECT 1 FROM held o WHERE {_same_key('o', 'd')})"
            (n_fresh, digest) = e.rows(f"SELECT count(*), bit_xor(h) FROM ({fresh}) d WHERE NOT {held}")[0]
            if n_fresh < n:                                 # a later flush's copies of them are duplicates
                e.append("met", f"SELECT {e.dialect.lit(date)} AS date, {', '.join(KEY)} FROM ({fresh}) d WHERE {held}",
                         fresh=not self.met)
                self.met.add(date)
            fresh = f"SELECT * FROM ({fresh}) d WHERE NOT {held}"
        self.valid += n
        self.already += n - n_fresh
        if not n_fresh:
            return
        target = folder / f"part-{(digest or 0) & (2**64 - 1):016x}.parquet"     # named by its content
        with atomic_path(target) as tmp:                    # readers never see half a file
            e.write(f"SELECT {_lake_select()} FROM ({fresh}) f ORDER BY {', '.join(KEY)}", tmp)
        self.written += n_fresh
        self.written_parts.add(target)

    def copies(self) -> list[Rejection]:
        return [r for *_, r in sorted(self.found, key=lambda x: x[:3])]

    def stats(self) -> dict:
        users = tracks = 0
        if self.flushes:
            (users,) = self.engine.rows("SELECT count(DISTINCT user_id) FROM seen_users")[0]
            (tracks,) = self.engine.rows("SELECT count(DISTINCT track_id) FROM seen_tracks")[0]
        return {"rows_valid": self.valid, "events_written": self.written, "events_already_in_lake": self.already,
                "part_files_written": len(self.written_parts), "users": int(users), "tracks": int(tracks)}


def _lake_select() -> str:
    """The lake's columns with the types every engine writes alike (age a number, the offset an int)."""
    typed = {"age": "TRY_CAST(age AS DOUBLE) AS age", "utc_offset_min": "CAST(utc_offset_min AS INT) AS utc_offset_min"}
    return ", ".join(typed.get(c, c) for c in LAKE_COLUMNS)


def _same_key(a: str, b: str) -> str:
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in KEY)


def _key_hash(engine: Engine) -> str:
    """A 64-bit hash of one event's key; XOR-ed over a part, it names the part by its content.
    The instant is hashed as it is held (a cast to text first cost DuckDB 5x the hash)."""
    fn = "xxhash64" if engine.dialect.name == "spark" else "hash"
    return f"{fn}(user_id, track_id, event_timestamp)"


# --- reading the lake --------------------------------------------------------------------------
def lake_parts(lake: Path) -> list[Path]:
    return sorted(Path(lake).glob("date=*/part-*.parquet"))


def _lake_types(frame: pd.DataFrame) -> pd.DataFrame:
    """The lake's columns with the dtypes readers expect, whichever engine wrote them."""
    if "event_timestamp" in frame:
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    if "utc_offset_min" in frame:
        frame["utc_offset_min"] = frame["utc_offset_min"].astype("Int64")
    if "age" in frame:
        frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype("float64")
    for c in set(frame.columns) & (set(TEXT_COLUMNS) - {"age"}):
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


def read_parts(parts: Sequence[Path], columns: Sequence[str] | None = None, where: bool = False) -> pd.DataFrame:
    """These parts' events in pandas, with the dtypes readers expect; ``where``: each row's part
    file and 1-based row in it as ``_source`` and ``_row`` (what a quarantine names)."""
    frames = []
    for part in parts:
        frame = pd.read_parquet(part, columns=list(columns) if columns else None)
        if where:
            frame["_source"], frame["_row"] = str(part), np.arange(1, len(frame) + 1)
        frames.append(frame)
    return _lake_types(pd.concat(frames, ignore_index=True))


def date_batches(lake: Path, max_rows: int) -> Iterator[list[Path]]:
    """The lake's parts in batches of whole UTC dates (every copy of an event falls on its date),
    up to ``max_rows`` events each by the parts' footers, a larger date alone."""
    import pyarrow.parquet as pq

    batch, rows = [], 0
    for _, date in groupby(lake_parts(lake), key=lambda p: p.parent):     # sorted: a date's parts together
        parts = list(date)
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        if batch and rows + n > max_rows:
            yield batch
            batch, rows = [], 0
        batch, rows = batch + parts, rows + n
    if batch:
        yield batch


def read_lake(lake: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every stored event in time order, in pandas: for the small worlds of the demo and the
    tests, and for stages that are not on the data plane yet. Jobs over the lake at volume read
    it on the engine (``lake_parts``) instead."""
    parts = lake_parts(lake)
    if not parts:                                   # typed all the same: readers subtract instants
        return _lake_types(pd.DataFrame(columns=list(columns or KEY)))
    frame = read_parts(parts, columns)
    return frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True) \
        if "event_timestamp" in frame else frame
