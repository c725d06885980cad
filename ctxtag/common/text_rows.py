"""Reading text drops record by record, so that one malformed record costs only itself.

The CSV and JSON-lines readers of every context (playlists, listening logs) open files here:

- ``.gz`` files are decompressed on the fly (a drop folder holds ``.csv.gz`` beside ``.csv``);
- a UTF-8 byte-order mark is dropped, CRLF and LF both end a line;
- bytes that are not UTF-8 are kept as surrogate escapes (``errors='surrogateescape'``), so the
  row that holds them is quarantined by the rules ("not valid UTF-8") and the others go on;
- a CSV record with more or fewer fields than the header, or a field over ``MAX_FIELD_CHARS``, is
  quarantined with its line number and raw text; quoted fields may hold commas and newlines
  (and empty quoted fields are missing values, like empty unquoted ones);
- a JSON line longer than ``MAX_LINE_CHARS`` is quarantined without being held in memory.

Row numbers are 1-based line numbers of where the record starts, so ``sed -n <row>p`` shows it.
A file is refused as a whole (``InputError``) only when it cannot be read at all: a broken gzip
container, say. Callers turn that into a file-level quarantine entry and go on with the others.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

import numpy as np
import pandas as pd

from ctxtag.common.arrow_text import string_spans
from ctxtag.common.quarantine import InputError, Rejection

if TYPE_CHECKING:
    import pyarrow as pa

MAX_FIELD_CHARS = 128 * 1024        # a longer field is quarantined (no column here needs more)
HARD_FIELD_CHARS = 16 * 1024 * 1024  # the exact reader's bound on one field, so one record's memory is bounded
MAX_LINE_CHARS = 8 * 1024 * 1024    # a JSON line longer than this is quarantined unread
# what reading a file that is not what its name says can raise (a broken gzip member: EOFError,
# zlib.error, gzip.BadGzipFile; parquet: ArrowInvalid, a ValueError; JSON: JSONDecodeError)
UNREADABLE = (OSError, ValueError, EOFError, zlib.error)


def _open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when its name ends in .gz (the caller closes it)."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")  # noqa: SIM115


def open_text(path: Path) -> TextIO:
    """A drop as text: gzip by its name, BOM dropped, undecodable bytes kept as surrogates (the caller closes it)."""
    raw = _open_bytes(path)
    # lines end at LF only (CRLF keeps its CR for the parsers to drop): a line number is what
    # `sed -n <row>p` shows, whatever CRs a field holds
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="\n")


class _Lines:
    """The file's lines for the csv module, numbered, remembering those of the record being parsed
    (its raw text and first line) and able to give back all but the first of them: a record that
    ran over several lines and was rejected (a stray quote swallows the lines after it) costs only
    its first line; the reader starts again on the next."""

    def __init__(self, fh: TextIO):
        self.lines, self.current, self.pending, self.number = iter(fh), [], deque(), 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:       # not a generator: lines given back after the end are read too
        if self.pending:
            item = self.pending.popleft()
        else:
            line = next(self.lines, None)
            if line is None:
                raise StopIteration
            self.number += 1
            item = (self.number, line)
        self.current.append(item)
        return item[1]

    def take(self) -> tuple[int, str]:
        """(first line number, raw text) of the record just parsed."""
        first = self.current[0][0] if self.current else self.number + 1
        text = "".join(t for _, t in self.current).rstrip("\r\n")
        self.current = []
        return first, text

    def reject(self) -> tuple[int, str]:
        """Give back every line of the record but the first; (its line number, the first line)."""
        first, *rest = self.current
        self.pending.extendleft(reversed(rest))
        self.current = []
        return first[0], first[1].rstrip("\r\n")


def _columns(header: list[str], path: Path) -> list[str]:
    names = [h.strip() for h in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(path, f"duplicate column name(s) {twice} in the header")
    return names


def headerless(frame: pd.DataFrame) -> bool:
    """Whether ``read_csv_rows`` read an empty file: no header, so no columns to check, no rows."""
    return list(frame.columns) == ["row"]


def read_csv_rows(path: Path, sep: str = ",", arrow: bool = False) -> tuple[pd.DataFrame, list[Rejection]]:
    """Every well-formed record of a CSV file as text (blank -> None) with its ``row``; the
    malformed ones as rejections. An empty file has no columns; a header-only file no rows.

    Arrow's CSV reader parses the file when every record is one line of valid UTF-8 (then its
    record numbers are line numbers): ~6x the csv module's speed. Anything else — a quoted
    newline, a blank line, bytes that are not UTF-8, a record larger than Arrow's block — is read
    again by the exact reader, which follows the file line by line.

    ``arrow``: where the fast reader read the file, its Arrow table (text columns and ``row``) is
    returned as is, sparing a copy into Python objects; it holds only valid UTF-8."""
    try:
        frame, rejections, longest = _read_fast(path, sep, arrow)
    except _Inexact:
        frame, rejections = _read_exact(path, sep)          # it rejects over-long fields as it reads
        return frame, rejections
    if longest <= MAX_FIELD_CHARS:
        return frame, rejections
    return _field_limit(frame.to_pandas().astype(object) if arrow else frame, rejections, path, sep)


class _Inexact(Exception):
    """The fast reader cannot give exact rows for this file."""


def _header(path: Path, sep: str) -> list[str] | None:
    with open_text(path) as fh:
        return next(csv.reader(fh, delimiter=sep), None)


_BLOCK = 1 << 22          # bytes _physical_lines reads at a time


def _physical_lines(path: Path) -> tuple[int, bool]:
    """(lines as the exact reader numbers them, whether a CR stands alone somewhere)."""
    count, cr, crlf, last = 0, 0, 0, b"\n"
    with _open_bytes(path) as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            count += int(np.count_nonzero(np.frombuffer(block, np.uint8) == ord("\n")))  # ~4x bytes.count
            # CRs are rare: count them, and the CRLFs (one split across blocks too), only in a
            # block that has one or follows one (``in`` is a memchr)
            if last == b"\r" or b"\r" in block:
                crlf += block.count(b"\r\n") + (last == b"\r" and block[:1] == b"\n")
                cr += block.count(b"\r")
            last = block[-1:]
    return count + (last != b"\n"), cr != crlf


def _longest(col: pa.ChunkedArray) -> int:
    """The longest text of a column in characters, or in bytes where no text has more bytes than
    MAX_FIELD_CHARS (a character is one byte or more, so then no text has more characters):
    the byte lengths come free from the offsets, utf8_length decodes every string."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        most = max((int(np.diff(string_spans(c)[0]).max()) for c in col.chunks if len(c)),
                   default=0)                                           # null slots too: still a bound
        if most <= MAX_FIELD_CHARS:
            return most
    return pc.max(pc.utf8_length(col)).as_py() or 0


def _read_fast(path: Path, sep: str, arrow: bool = False) -> tuple[pd.DataFrame, list[Rejection], int]:
    """(frame, rejections, the longest field's length: see _longest) or _Inexact."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    try:
        header = _header(path, sep)
    except (csv.Error, *UNREADABLE) as exc:
        raise _Inexact from exc
    if header is None:
        raise _Inexact
    names = _columns(header, path)
    invalid = []

    def skip(row) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                 null_values=[""],   # only blanks: "NA", "null" are text
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True))
    except (pa.ArrowException, *UNREADABLE) as exc:
        raise _Inexact from exc
    numbers = [r.number for r in invalid]
    lines, bare_cr = _physical_lines(path)
    # a record spans lines, or there are blank lines, or Arrow split at a CR that is no line end here
    if None in numbers or bare_cr or lines != 1 + table.num_rows + len(invalid):
        raise _Inexact
    longest = max(map(_longest, table.columns), default=0)
    valid = np.ones(lines - 1, dtype=bool)                  # lines 2..: the records after the header
    valid[np.asarray(numbers, dtype=np.int64) - 2] = False
    if arrow:
        frame = table.rename_columns(names).append_column("row", pa.array(np.arange(2, lines + 1)[valid]))
    else:
        frame = table.to_pandas().astype(object)
        frame.columns = names
        frame["row"] = np.arange(2, lines + 1)[valid]
    rejections = [Rejection(str(path), r.number, _field_count(r.actual_columns, r.expected_columns), raw=r.text)
                  for r in invalid]
    return frame, rejections, longest


def _field_count(found: int, expected: int) -> str:
    return f"malformed CSV row: {found} fields, the header has {expected}"


def _read_exact(path: Path, sep: str) -> tuple[pd.DataFrame, list[Rejection]]:
    """The csv module, record by record: line numbers follow quoted newlines and blank lines. A
    rejected record that ran over several lines gives its other lines back to be read again. A
    compressed file that breaks off keeps the rows before the break."""
    csv.field_size_limit(HARD_FIELD_CHARS)
    rows, numbers, rejections = [], [], []

    def reject(reason: str) -> None:
        if len(lines.current) > 1:
            first, raw = lines.reject()
        else:
            first, raw = lines.take()
        rejections.append(Rejection(str(path), first, reason, raw=raw))

    fh = open_text(path)
    lines = _Lines(fh)
    reader = csv.reader(lines, delimiter=sep)
    try:
        header = next(reader, None)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        fh.close()
        raise InputError(path, f"cannot read the compressed file: {exc}") from exc
    except csv.Error as exc:
        fh.close()
        raise InputError(path, f"unreadable CSV header: {exc}") from exc
    with fh:
        if header is None:
            return pd.DataFrame(columns=["row"]), []
        header = _columns(header, path)
        lines.take()
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                reject(f"malformed CSV row: {exc}")
                continue
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                rejections.append(Rejection(str(path), lines.number + 1,
                                            f"the compressed file breaks off here ({exc}): the rest is unreadable"))
                break
            if not fields:                                    # a blank line
                lines.take()
                continue
            if len(fields) != len(header):
                reject(_field_count(len(fields), len(header)))
                continue
            if max(map(len, fields)) > MAX_FIELD_CHARS:
                col = header[max(range(len(fields)), key=lambda j: len(fields[j]))]
                reject(f"field longer than {MAX_FIELD_CHARS} characters: {col}")
                continue
            first, _ = lines.take()
            rows.append(fields)
            numbers.append(first)
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    frame = frame.mask(frame == "", None)
    frame["row"] = numbers
    return frame, rejections


def _field_limit(frame: pd.DataFrame, rejections: list[Rejection], path: Path, sep: str
                 ) -> tuple[pd.DataFrame, list[Rejection]]:
    """Rows with a field over MAX_FIELD_CHARS are rejected, whichever reader read them."""
    columns = [c for c in frame.columns if c != "row"]
    if frame.empty or not columns:
        return frame, rejections
    over = pd.DataFrame({c: frame[c].str.len().gt(MAX_FIELD_CHARS) for c in columns})
    if not over.to_numpy().any():
        return frame, rejections
    bad = over.any(axis=1)
    first = over[bad].idxmax(axis=1)
    rejections = rejections + [
        Rejection(str(path), int(frame.at[i, "row"]), f"field longer than {MAX_FIELD_CHARS} characters: {col}",
                  raw=sep.join("" if v is None else str(v) for v in frame.loc[i, columns]))
        for i, col in first.items()
    ]
    return frame.loc[~bad].reset_index(drop=True), sorted(rejections, key=lambda r: r.row)


def read_json_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, line) for every non-blank line; an over-long line comes as (number, None)."""
    try:
        with open_text(path) as fh:
            lineno = 0
            while True:
                line = fh.readline(MAX_LINE_CHARS)
                if not line:
                    return
                lineno += 1
                if len(line) == MAX_LINE_CHARS and not line.endswith("\n"):
                    while line and not line.endswith("\n"):          # skip the rest of it
                        line = fh.readline(MAX_LINE_CHARS)
                    yield lineno, None
                elif line.strip():
                    yield lineno, line.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(path, f"cannot read the compressed file: {exc}") from exc


def refused(path: Path, exc: Exception) -> Rejection:
    """A whole file that could not be read, as a quarantine entry (row 0: the file itself)."""
    reason = exc.reason if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return Rejection(str(path), 0, f"file refused: {reason}")
