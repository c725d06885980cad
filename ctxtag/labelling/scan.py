"""Playlists read at Million Playlist Dataset scale: one file at a time, entries as integer codes.

``scan_playlists`` reads every playlist file (in worker processes when there are many) and keeps
what labelling needs in a compact form, ``PlaylistCodes``: one row per valid playlist (id, title,
source, row, track count, its largest same-artist and same-album counts, the contexts its title
names) and one row per entry as four int32 codes (playlist, track, artist, album) into string
tables. Scanned for labelling (``contexts`` given), only the entries of playlists whose title
names a context are kept — nothing else of an entry is ever read — and 66M entries take well
under 1 GB instead of the ~25 GB of a pandas frame of Python strings.

The rules are those of ``playlists.validate_entries``, row for row, reason for reason. Two ways
lead there, and give the same result:

- the fast way, for JSON lines and MPD slices whose every value has the kind the rules accept:
  Arrow's JSON reader decodes JSON lines whose ids are all text straight into Arrow arrays (no
  Python object per entry); otherwise msgspec decodes the file against a schema (text or integer
  ids, text titles, lists of track objects). Each column becomes one Arrow array of ids in their
  id form, and the rules run as vectorised operations on it;
- the exact way, for everything else — CSV, parquet, a file with one record of the wrong shape
  (a title that is a number, a line that is not JSON, bytes that are not UTF-8): the
  file-at-a-time readers and ``validate_entries`` of ``playlists``, as before.

A file goes one way or the other as a whole. Duplicate playlist ids across files are settled
here as the whole-input reader did: the first file's playlist wins, the later one is quarantined
(after every per-file rejection) and its entries dropped.

Strings to codes: ``StringTable``, an open-addressing table of the strings' hashes held in numpy
arrays, every hit confirmed by comparing the texts (so codes are exact). A batch of lookups is a
few vectorised gathers; a Python dict probe per value costs ~1.5 us on the 2-core VM (a TLB miss
walk for each), ~70x a gather. The hashes (``hash_strings``) are computed from the Arrow arrays'
buffers, all strings at once, and are the same in every process. A file's ids are dictionary
encoded first, so each distinct one is hashed and looked up once, and a track's repeats within a
playlist are found on exact codes. Each worker has its own tables and sends, with each file's
codes, the strings it has coded since its previous file and their hashes; the parent maps worker
codes to its own. Track ids are looked up in the catalogue's table when there is one (read once,
shared by the forked workers): its codes are the same in every process and no track string
crosses a pipe.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ctxtag.common.arrow_text import string_spans
from ctxtag.common.io import catalogue_id_array, collect_files, known_track_ids
from ctxtag.common.quarantine import Rejection
from ctxtag.common.text_rows import MAX_LINE_CHARS, UNREADABLE, refused
from ctxtag.labelling import playlists as pl
from ctxtag.labelling.matcher import match_contexts

COLUMNS = ("track", "artist", "album")
_SURROGATE = re.compile("[\ud800-\udfff]")          # ctxtag.common.io.UNDECODABLE
_ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "   # what str.strip() strips from ASCII text
# below this much input, worker processes cost more than they save
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
_JSONL_BLOCK = 64 * 1024 * 1024


# --- string tables ------------------------------------------------------------------------------------

class _Growing:
    """A numpy array appended to in place (capacity doubling)."""

    def __init__(self, dtype=np.int32) -> None:
        self._data = np.zeros(1024, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self._data):
            grown = np.zeros(max(2 * len(self._data), end), dtype=self._data.dtype)
            grown[:self.size] = self._data[:self.size]
            self._data = grown
        self._data[self.size:end] = values
        self.size = end

    @property
    def values(self) -> np.ndarray:
        return self._data[:self.size]


_K_LENGTH, _K_WORD = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_K_FINAL1, _K_FINAL2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_TAIL = np.array([(1 << 8 * k) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)  # the first k bytes


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash (int64) of each string of an Arrow string array, from its buffers: the length,
    then each 8-byte word of the text in turn, multiplied and xor-shifted in, every string at once
    (~1.5x faster than ``to_pylist`` and Python's ``hash`` of each). Equal texts hash equal in any
    array, slice or chunk, string or large_string, and in every process: Python salts ``hash`` per
    interpreter, so a spawned worker's hashes would not be the parent's. Nulls hash as 0."""
    if isinstance(arr, pa.ChunkedArray):
        return np.concatenate([hash_strings(c) for c in arr.chunks] or [np.zeros(0, np.int64)])
    if not len(arr):
        return np.zeros(0, np.int64)
    offsets, data = string_spans(arr, pad=8)
    # the 8 bytes from each byte on, as a little-endian word: a strided view, no copy (the padding
    # keeps a word read at the last byte inside the buffer)
    words = np.ndarray((len(data) - 7,), np.uint64, data, 0, (1,))
    at, left = offsets[:-1].copy(), np.diff(offsets)
    h = left.astype(np.uint64) * _K_LENGTH
    todo = slice(None)                               # the strings with bytes left: all, at first
    while len(at):                                   # their next word, all at once (in place: no page faults)
        w = words[at]
        if left.min() < 8:                           # a last word: the next string's bytes count as 0
            w &= _TAIL[np.minimum(left, 8)]
        w ^= h[todo]
        w *= _K_WORD
        w ^= w >> np.uint64(29)
        h[todo] = w
        at += 8
        left -= 8
        more = left > 0
        if not more.all():
            todo = np.arange(len(h))[todo][more]
            at, left = at[more], left[more]
    h ^= h >> np.uint64(33)                          # murmur3's finaliser: every bit to the low ones
    h *= _K_FINAL1
    h ^= h >> np.uint64(33)
    h *= _K_FINAL2
    h ^= h >> np.uint64(33)
    if arr.null_count:
        h[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    return h.view(np.int64)


class _Strings:
    """Strings in code order in one growable byte buffer and offsets: an Arrow view of them all is
    free (a take over a ChunkedArray would concatenate its chunks every time)."""

    def __init__(self) -> None:
        self._data = _Growing(np.uint8)
        self._offsets = _Growing(np.int64)
        self._offsets.extend(np.zeros(1, dtype=np.int64))

    def __len__(self) -> int:
        return self._offsets.size - 1

    def extend(self, arr: pa.Array) -> None:
        offsets, raw = string_spans(arr)
        self._offsets.extend(offsets[1:] + self._data.size)
        self._data.extend(raw)

    def array(self) -> pa.LargeStringArray:
        return pa.LargeStringArray.from_buffers(len(self), pa.py_buffer(self._offsets.values),
                                                pa.py_buffer(self._data.values))


_USED = np.int64(-1 << 63)          # the top bit, set in every slot's key: 0 is an empty slot


class StringTable:
    """Distinct strings -> dense int32 codes in order of first sight (see the module docstring):
    linear probing over numpy arrays of the strings' hashes and codes, every hash match confirmed
    by an Arrow text compare."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._slot_key = np.zeros(capacity, dtype=np.int64)     # hash | _USED; 0: empty
        self._slot_code = np.zeros(capacity, dtype=np.int32)
        self._hash = _Growing(np.int64)
        self._strings = _Strings()
        self.size = 0
        self.sent = 0                   # strings handed over by take_new

    def strings(self) -> pa.LargeStringArray:
        return self._strings.array()

    def lookup(self, arr: pa.Array, h: np.ndarray, insert: bool = True) -> np.ndarray:
        """Codes of ``arr``'s strings (no nulls; ``h`` their hashes). Strings not in the table get
        new codes in order of first sight (``insert``) or -1."""
        n = len(h)
        out = np.full(n, -1, dtype=np.int32)
        key, mask = h | _USED, len(self._slot_key) - 1
        todo, slot = np.arange(n), h & mask
        while len(todo):
            # probe on to an empty slot (not there) or one holding the same hash (there, but for a
            # true collision): a round is one gather; the texts are compared after, all at once
            match = np.full(n, -1, dtype=np.int64)                     # the slot holding each one's hash
            while len(todo):
                found = self._slot_key[slot]
                same = found == key[todo]
                match[todo[same]] = slot[same]
                on = (found != 0) & ~same
                todo, slot = todo[on], (slot[on] + 1) & mask
            if (match < 0).all():
                break
            code = np.where(match >= 0, self._slot_code[match], -1)
            same = self._spells(arr, code)
            out[same] = code[same]
            todo = np.flatnonzero((match >= 0) & ~same)                # a collision: probe on past it
            slot = (match[todo] + 1) & mask
        absent = np.flatnonzero(out < 0)
        if insert and len(absent):
            out[absent] = self._insert(arr if len(absent) == n else arr.take(pa.array(absent)), h[absent])
        return out

    def _insert(self, arr: pa.Array, h: np.ndarray) -> np.ndarray:
        """New codes for strings not in the table, in order of first sight (a repeated one once)."""
        ordered = np.sort(h)
        if (ordered[1:] != ordered[:-1]).all():     # distinct hashes, distinct strings: the usual case
            index = first = np.arange(len(h))
            distinct = arr
        else:
            enc = pc.dictionary_encode(arr)         # distinct, in order of first sight
            index, distinct = enc.indices.to_numpy(), enc.dictionary
            # indices come in order of first sight: their running maximum steps up at each first one
            first = np.flatnonzero(np.diff(np.maximum.accumulate(index), prepend=-1))
        new = np.arange(self.size, self.size + len(first), dtype=np.int32)
        self._reserve(len(first))
        self._place(h[first], new)
        self._hash.extend(h[first])
        self._strings.extend(distinct)
        self.size += len(first)
        return new[index]

    def _spells(self, arr: pa.Array, code: np.ndarray) -> np.ndarray:
        """Whether each string of ``arr`` is the string ``code`` (-1: none)."""
        wanted = self.strings().take(pa.array(code, mask=code < 0))
        return pc.fill_null(pc.equal(arr.cast(pa.large_string()), wanted), False).to_numpy(zero_copy_only=False)

    def _reserve(self, extra: int) -> None:
        """At most half the slots in use (short probe sequences)."""
        need = 2 * (self.size + extra)
        if need <= len(self._slot_key):
            return
        cap = len(self._slot_key)
        while cap < need:
            cap *= 2
        self._slot_key = np.zeros(cap, dtype=np.int64)
        self._slot_code = np.zeros(cap, dtype=np.int32)
        self._place(self._hash.values, np.arange(self.size, dtype=np.int32))

    def _place(self, h: np.ndarray, codes: np.ndarray) -> None:
        """Put distinct strings' codes in free slots."""
        mask = len(self._slot_key) - 1
        todo = np.arange(len(h))
        slot = h & mask
        while len(todo):
            free = np.flatnonzero(self._slot_key[slot] == 0)
            # strings wanting the same free slot all write their code to it: one of them stays
            # there, and reading the slots back says which (no sort to pick one)
            self._slot_code[slot[free]] = codes[todo[free]]
            win = free[self._slot_code[slot[free]] == codes[todo[free]]]
            self._slot_key[slot[win]] = h[todo[win]] | _USED
            keep = np.ones(len(todo), dtype=bool)
            keep[win] = False
            todo, slot = todo[keep], (slot[keep] + 1) & mask

    def take_new(self) -> tuple[pa.Array, np.ndarray]:
        """The strings coded since the last call (and their hashes), in code order."""
        start, self.sent = self.sent, self.size
        # a compact copy: a slice would pickle the whole buffer under it
        return pa.concat_arrays([self.strings()[start:self.size]]), self._hash.values[start:self.size].copy()


def catalogue_table(known: set | Path | None) -> tuple[StringTable | None, set | Path | None]:
    """The catalogue's track ids as a table (codes: the catalogue's), from the ids or the
    catalogue's path; and what the exact way checks against (the ids, or the path to read them)."""
    if known is None:
        return None, None
    if isinstance(known, Path):
        if not known.exists():
            return None, None
        ids = catalogue_id_array(known)
        if ids is None:                                   # Arrow would not read it: pandas does
            known = known_track_ids(known)
            if known is None:
                return None, None
    if not isinstance(known, Path):
        ids = pa.array([k for k in known if isinstance(k, str)], type=pa.string())
    table = StringTable()
    if len(ids):
        table.lookup(ids, hash_strings(ids))
    return table, known


# --- one file ------------------------------------------------------------------------------------------

@dataclass
class FileBatch:
    """One file's valid playlists and entries (entries as the worker's codes) and its rejections."""

    source: str
    worker: int
    rejections: list[Rejection]
    playlist_ids: list[str]
    titles: list[str]
    rows: np.ndarray                # int64
    n_tracks: np.ndarray            # int32, per playlist
    max_artist: np.ndarray          # int32, per playlist: entries of its most frequent artist
    max_album: np.ndarray
    entry_playlist: np.ndarray      # int32, index into this file's playlists
    entries: dict[str, np.ndarray]  # column -> int32 worker codes (tracks: catalogue codes if there is one)
    context_bits: np.ndarray        # int64, per playlist: the contexts its title names (-1: not matched)
    new_strings: dict[str, tuple[pa.Array, np.ndarray]] = field(default_factory=dict)   # and their hashes


def _group_max(group: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, how many times its most frequent code occurs."""
    out = np.zeros(n_groups, dtype=np.int32)
    if not len(group):
        return out
    key = np.sort((group.astype(np.int64) << 32) | codes.astype(np.int64))
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    runs = np.diff(np.r_[starts, len(key)])
    np.maximum.at(out, (key[starts] >> 32).astype(np.int64), runs.astype(np.int32))
    return out


def _as_id(value: object) -> str | None:
    """``playlists._as_id`` for one value: integers as text, text stripped, blank -> missing."""
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value)).strip() or None


class _Decline(Exception):
    """The fast way cannot read this file exactly: it goes the exact way."""


@dataclass
class _Ids:
    """One column of ids in their id form: an Arrow array (missing: null) and the same as Python
    values (the decoded objects themselves where nothing changed; None when Arrow decoded them:
    the few a rejection names are read from the array)."""

    arr: pa.Array
    py: list | None

    @classmethod
    def of(cls, values: list | pa.Array) -> _Ids:
        if isinstance(values, pa.Array):                  # decoded by Arrow: text or null already
            raw = values
        else:
            try:
                raw = pa.array(values, type=pa.string())
            except (pa.ArrowException, TypeError, ValueError):    # integers among them
                raw = None
        if raw is not None and _trimmed(raw):
            return cls(raw, None if isinstance(values, pa.Array) else values)
        if raw is not None and pc.all(pc.string_is_ascii(raw)).as_py() is not False:
            # ASCII: str.strip() strips exactly these, so Arrow can do it for all at once
            trimmed = pc.ascii_trim(raw, _ASCII_SPACE)
            blank = pc.fill_null(pc.equal(trimmed, ""), False)
            changed = pc.fill_null(pc.or_(pc.not_equal(trimmed, raw), blank), False).to_numpy(zero_copy_only=False)
            py = None if isinstance(values, pa.Array) else values
            if not changed.any():
                return cls(raw, py)
            arr = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
            if py is not None:
                py = list(py)
                at = np.flatnonzero(changed)
                for i, v in zip(at.tolist(), arr.take(pa.array(at)).to_pylist(), strict=True):
                    py[i] = v
            return cls(arr, py)
        if isinstance(values, pa.Array):
            values = values.to_pylist()
        py = [_as_id(v) for v in values]
        try:
            return cls(pa.array(py, type=pa.string()), py)
        except (pa.ArrowException, UnicodeEncodeError) as exc:   # not UTF-8: the exact way says which row
            raise _Decline from exc

    def value(self, i: int) -> str | None:
        return self.arr[i].as_py() if self.py is None else self.py[i]


def _trimmed(arr: pa.Array) -> bool:
    """Whether ``str.strip`` leaves every id of ``arr`` as it is, none blank, from its bytes alone
    (~1.5x faster than Arrow's ASCII check and trim): each starts and ends with a visible ASCII
    character. What ``strip`` strips is an ASCII space or control byte, or a character whose UTF-8
    bytes are all >= 0x80."""
    offsets, data = string_spans(arr)
    length = np.diff(offsets)
    blank = length == 0
    if arr.null_count:                                    # a null is missing, not blank
        blank &= arr.is_valid().to_numpy(zero_copy_only=False)
    if blank.any():
        return False
    full = length > 0
    ends = np.concatenate([data[offsets[:-1][full]], data[offsets[1:][full] - 1]])
    return bool(((ends > 0x20) & (ends < 0x80)).all())


class _Worker:
    """Reads files one at a time; its string tables live as long as it does. ``catalogue``: the
    catalogue's table (or None: no unknown-track rule); ``known``: the same ids for the exact way.
    ``contexts``: when given, only playlists whose title names one keep their entries (nothing
    else of an entry is used by labelling), and only their tracks, artists and albums are coded."""

    def __init__(self, catalogue: StringTable | None, known: set | Path | None, fast: bool = True,
                 contexts: tuple[str, ...] | None = None):
        self.catalogue, self._known = catalogue, known
        self.tables = {c: StringTable() for c in COLUMNS if not (c == "track" and catalogue is not None)}
        self.fast = fast
        self.contexts = tuple(contexts) if contexts is not None else None
        self.named: dict[str, int] = {}                  # title -> the contexts it names, as bits
        self.id = os.getpid()

    def known_ids(self) -> set | None:
        if isinstance(self._known, Path):                # the exact way needs a set: read it once
            self._known = known_track_ids(self._known)
        return self._known

    def scan(self, path: Path) -> FileBatch:
        fmt = pl.detect_format(path)
        batch = None
        if self.fast and fmt in ("jsonl", "mpd"):
            enabled = gc.isenabled()
            gc.disable()                 # millions of small acyclic objects: no cycles to collect
            try:
                cols = _decode(path, fmt)
                if cols is not None:
                    batch = self._validate(path, cols)
            except _Decline:
                batch = None
            finally:
                if enabled:
                    gc.enable()
        if batch is None:
            batch = self._exact(path, fmt)
        batch.new_strings = {c: t.take_new() for c, t in self.tables.items()}
        return batch

    def _context_bits(self, titles: list) -> np.ndarray:
        """Per title, the contexts it names as bits (bit j: contexts[j]); each distinct title is
        matched once per worker. All bits set when no contexts were given (every entry is kept)."""
        if self.contexts is None:
            return np.full(len(titles), -1, dtype=np.int64)
        named, index = self.named, {c: j for j, c in enumerate(self.contexts)}
        for t in set(titles).difference(named):
            named[t] = 0 if t is None else sum(1 << index[c] for c in match_contexts(t, self.contexts))
        return np.fromiter(map(named.__getitem__, titles), dtype=np.int64, count=len(titles))

    def _lookup(self, column: str, ids: pa.Array) -> np.ndarray:
        """Codes of the ids (none missing). Each distinct id is hashed and looked up once: a file
        repeats its popular tracks, artists and albums (a third to a half of its ids are distinct),
        and Arrow's dictionary encoding costs about what hashing them all would."""
        enc = pc.dictionary_encode(ids)
        return self._codes(column, enc.dictionary)[enc.indices.to_numpy()]

    def _codes(self, column: str, distinct: pa.Array) -> np.ndarray:
        """Codes of distinct ids: the catalogue's for tracks when there is one (-1: not in it), the
        worker's own otherwise (new ones in the order given: a dictionary's is that of first sight)."""
        if column == "track" and self.catalogue is not None:
            return self.catalogue.lookup(distinct, hash_strings(distinct), insert=False)
        return self.tables[column].lookup(distinct, hash_strings(distinct))

    # the exact way: the per-file readers and rules of playlists.py
    def _exact(self, path: Path, fmt: str) -> FileBatch:
        rejections: list[Rejection] = []
        try:
            flat = pl._READERS[fmt](path, rejections)
        except UNREADABLE as exc:
            return self._batch(path, [refused(path, exc)], [], [], np.zeros(0, np.int64),
                               np.zeros(0, np.int32), np.zeros(0, np.int32), {c: np.zeros(0, np.int32) for c in COLUMNS})
        table = pl.validate_entries(flat, path, nested=fmt in ("jsonl", "mpd") or "_nested" in flat.attrs,
                                    known_tracks=self.known_ids() if self.catalogue is not None else None)
        table.rejections[:0] = rejections
        ids = table.playlists["playlist_id"].tolist()
        entry_pl = pd.Index(ids).get_indexer(table.entries["playlist_id"]).astype(np.int32)
        codes = {c: self._lookup(c, _Ids.of(table.entries[f"{c}_id"].tolist()).arr) for c in COLUMNS}
        if (codes["track"] < 0).any():      # pandas' reading of the catalogue and Arrow's disagree
            raise RuntimeError(f"{path}: a track the catalogue check kept is not in the catalogue's table")
        return self._batch(path, table.rejections, ids, table.playlists["title"].tolist(),
                           table.playlists["row"].to_numpy(np.int64), np.bincount(entry_pl, minlength=len(ids)),
                           entry_pl, codes)

    def _batch(self, path: Path, rejections: list[Rejection], ids: list, titles: list, rows: np.ndarray,
               n_tracks: np.ndarray, entry_pl: np.ndarray, codes: dict[str, np.ndarray],
               bits: np.ndarray | None = None) -> FileBatch:
        n = len(ids)
        return FileBatch(str(path), self.id, rejections, ids, titles, rows, np.asarray(n_tracks, dtype=np.int32),
                         _group_max(entry_pl, codes["artist"], n), _group_max(entry_pl, codes["album"], n),
                         entry_pl, codes, self._context_bits(titles) if bits is None else bits)

    # the fast way: the same rules, vectorised
    def _validate(self, path: Path, cols: _Columns) -> FileBatch:
        source, rows = str(path), cols.rows
        n_rec = len(rows)
        pid = [_as_id(v) for v in cols.ids]
        title = cols.titles
        bits = self._context_bits(title)
        named = bits != 0

        per_row = np.maximum(cols.lengths, 1)
        rec = np.repeat(np.arange(n_rec), per_row)                    # flat rows: one per entry, or one
        n_rows = len(rec)
        has_entry = np.repeat(cols.lengths > 0, per_row)
        entry_row = np.flatnonzero(has_entry)                          # entry i is flat row entry_row[i]
        entry_of_row = np.full(n_rows, -1, dtype=np.int64)
        entry_of_row[entry_row] = np.arange(len(entry_row))
        ids = {c: _Ids.of(cols.values[c]) for c in COLUMNS}

        reason = np.zeros(n_rows, dtype=np.int8)
        texts: list[str] = [""]

        def rule(cond: np.ndarray, text: str) -> int:
            texts.append(text)
            reason[(reason == 0) & cond] = len(texts) - 1
            return len(texts) - 1

        def per_entry(values: np.ndarray) -> np.ndarray:             # entry values onto flat rows
            out = np.zeros(n_rows, dtype=bool)
            out[entry_row] = values
            return out

        for col, values, limit in (("playlist_id", pid, pl.MAX_ID_CHARS), ("title", title, pl.MAX_TITLE_CHARS)):
            undec = np.fromiter((v is not None and not v.isascii() and _SURROGATE.search(v) is not None
                                 for v in values), bool, n_rec)
            long = np.fromiter((v is not None and len(v) > limit for v in values), bool, n_rec)
            rule(undec[rec], f"not valid UTF-8: {col} contains undecodable bytes")
            rule(long[rec], f"{col} longer than {limit} characters")
        missing = {}
        for c in COLUMNS:                 # no id is undecodable here: Arrow took them all as UTF-8
            # characters are counted only when an id has more bytes than the limit allows characters
            if np.diff(string_spans(ids[c].arr)[0]).max(initial=0) > pl.MAX_ID_CHARS:
                length = pc.utf8_length(ids[c].arr)
                if (pc.max(length).as_py() or 0) > pl.MAX_ID_CHARS:
                    rule(per_entry(pc.fill_null(pc.greater(length, pl.MAX_ID_CHARS), False).to_numpy(zero_copy_only=False)),
                         f"{c}_id longer than {pl.MAX_ID_CHARS} characters")
            missing[c] = ids[c].arr.is_null().to_numpy(zero_copy_only=False)
        pid_code, _ = pd.factorize(np.asarray(pid, dtype=object))         # None -> -1
        rule((pid_code < 0)[rec], "missing playlist_id")
        rule(np.fromiter((t is None or not t.strip() for t in title), bool, n_rec)[rec], "missing title")
        rule(~has_entry, "empty playlist: no tracks")
        for c in COLUMNS:
            rule(per_entry(missing[c]), f"missing {c}_id")

        # one playlist id per record: a later record reusing an id is a duplicate (the first row wins)
        _, first_rec = np.unique(pid_code, return_index=True)         # codes come in order of first sight
        first_row = rows[first_rec[pid_code - pid_code.min(initial=0)]] if n_rec else rows
        dup_id = rule(((pid_code >= 0) & (first_row != rows))[rec], "duplicate playlist_id")

        # the file's track ids coded exactly (for repeats), and looked up in the catalogue if there is one
        tracks = pc.dictionary_encode(ids["track"].arr)
        track_index = pc.fill_null(tracks.indices, -1).to_numpy(zero_copy_only=False)       # -1: missing
        if self.catalogue is not None:            # -1 appended: a missing track's (index -1)
            track_code = np.append(self._codes("track", tracks.dictionary), np.int32(-1))[track_index]
        # a track twice in a playlist: the later rows go (among rows no rule has failed yet)
        ok = np.flatnonzero(reason == 0)
        rule(self._repeats(ok, rec, entry_of_row, track_index, n_rows), "duplicate track_id within the playlist")
        if self.catalogue is not None:
            rule(per_entry(track_code < 0) & has_entry, "unknown track_id: not in the track catalogue")

        rejections = []
        bad = np.flatnonzero(reason > 0)
        if len(bad):
            for i in bad.tolist():
                r, k, e = int(rec[i]), int(reason[i]), int(entry_of_row[i])
                text = f"duplicate playlist_id: first seen at row {first_row[r]}" if k == dup_id else texts[k]
                vals = {c: ids[c].value(e) if e >= 0 else None for c in COLUMNS}
                raw = json.dumps({"playlist_id": pid[r], "title": title[r], "track_id": vals["track"],
                                  "artist_id": vals["artist"], "album_id": vals["album"]},
                                 ensure_ascii=False, default=str)
                rejections.append(Rejection(source, int(rows[r]), text, playlist_id=pid[r],
                                            track_id=vals["track"], raw=raw))

        good = reason == 0
        valid_rec = np.bincount(rec[good], minlength=n_rec) > 0
        index = np.cumsum(valid_rec) - 1
        keep = np.flatnonzero(valid_rec)
        n_tracks = np.bincount(index[rec[good]], minlength=len(keep))
        sent_rows = np.flatnonzero(good & named[rec])                  # the entries labelling reads
        sent = entry_of_row[sent_rows]
        at = pa.array(sent)
        codes = {"track": track_code[sent] if self.catalogue is not None else self._lookup("track", ids["track"].arr.take(at))}
        for c in ("artist", "album"):
            codes[c] = self._lookup(c, ids[c].arr.take(at))
        return self._batch(path, rejections, [pid[i] for i in keep.tolist()], [title[i] for i in keep.tolist()],
                           rows[keep].astype(np.int64), n_tracks, index[rec[sent_rows]].astype(np.int32), codes,
                           bits[keep])

    @staticmethod
    def _repeats(ok: np.ndarray, rec: np.ndarray, entry_of_row: np.ndarray, track_index: np.ndarray,
                 n_rows: int) -> np.ndarray:
        """Rows (among ``ok``) whose track an earlier row of the same record has: the rows sorted by
        (record, the file's code of the track), one int64 key. A stable sort keeps a key's rows in
        order, the first first; and records come in order, so it merges short runs."""
        key = (rec[ok].astype(np.int64) << 32) | track_index[entry_of_row[ok]]
        order = np.argsort(key, kind="stable")
        again = np.zeros(n_rows, dtype=bool)
        again[ok[order[1:]][key[order[1:]] == key[order[:-1]]]] = True
        return again


# --- decoding (the fast way) -----------------------------------------------------------------------------

@dataclass
class _Columns:
    ids: list                 # per record: raw playlist id (text, integer or None)
    titles: list              # per record: text or None
    rows: np.ndarray          # per record: its row (line number, or position in an MPD slice)
    lengths: np.ndarray       # per record: number of track entries (0: none, null or missing)
    values: dict[str, list | pa.Array]   # column -> raw entry values, records' entries one after the other


_ID = str | int | None


class _Track(msgspec.Struct, gc=False):
    track_id: _ID = None
    artist_id: _ID = None
    album_id: _ID = None


class _Record(msgspec.Struct, gc=False):
    playlist_id: _ID = None
    title: str | None = None
    tracks: list[_Track] | None | msgspec.UnsetType = msgspec.UNSET


class _MPDTrack(msgspec.Struct, gc=False):
    track_uri: _ID = None
    artist_uri: _ID = None
    album_uri: _ID = None


class _MPDPlaylist(msgspec.Struct, gc=False):
    pid: _ID = None
    name: str | None = None
    tracks: list[_MPDTrack] | None = None


class _MPDSlice(msgspec.Struct, gc=False):
    playlists: list[_MPDPlaylist]


_RECORD = msgspec.json.Decoder(_Record)
_SLICE = msgspec.json.Decoder(_MPDSlice)
_REFUSED = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError, _Decline, *UNREADABLE)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")  # noqa: SIM115


def _decode(path: Path, fmt: str) -> _Columns | None:
    """The file's columns when every record fits the schema; None sends it the exact way."""
    try:
        return _decode_mpd(path) if fmt == "mpd" else _decode_jsonl(path)
    except _REFUSED:
        return None


def _columns(ids: list, titles: list, tracks: list, rows: np.ndarray, keys: tuple[str, str, str]) -> _Columns:
    lengths = np.fromiter((len(t) if t else 0 for t in tracks), dtype=np.int64, count=len(tracks))
    flat = [e for t in tracks if t for e in t]
    values = {c: list(map(attrgetter(k), flat)) for c, k in zip(COLUMNS, keys, strict=True)}
    return _Columns(ids, titles, rows, lengths, values)


_BUFFERS: dict[str, bytearray] = {}


def _buffer(name: str, size: int) -> bytearray:
    """A buffer kept between files: a slice is read into memory already mapped, not into fresh
    pages the kernel must fault in for every file (a third of the time went there otherwise)."""
    buf = _BUFFERS.get(name)
    if buf is None or len(buf) < size:
        buf = _BUFFERS[name] = bytearray(max(size, 2 * len(buf) if buf is not None else 0))
    return buf


def _read_into(fh, buf: bytearray, size: int) -> int:
    """Read up to ``size`` bytes into ``buf``; how many were read."""
    view, n = memoryview(buf), 0
    while n < size:
        got = fh.readinto(view[n:size])
        if not got:
            break
        n += got
    return n


def _decode_mpd(path: Path) -> _Columns | None:
    if path.name.lower().endswith(".gz"):
        with _open(path) as fh:
            data = memoryview(fh.read())
    else:
        size = path.stat().st_size + 1                  # one more: a file that grew is read to its end
        buf = _buffer("mpd", size)
        with path.open("rb", buffering=0) as fh:
            data = memoryview(buf)[:_read_into(fh, buf, size)]
    doc = _SLICE.decode(data[3:] if bytes(data[:3]) == b"\xef\xbb\xbf" else data)
    recs = doc.playlists
    return _columns([p.pid for p in recs], [p.name for p in recs], [p.tracks for p in recs],
                    np.arange(1, len(recs) + 1, dtype=np.int64), ("track_uri", "artist_uri", "album_uri"))


def _blocks(path: Path) -> Iterator[tuple[bytes | bytearray, int, int, int, bool]]:
    """(data, start, end, number of lines, whether every line opens an object): pieces of the file
    holding whole lines (a BOM dropped), the read blocks themselves (read into one reused buffer,
    uncopied) and the lines cut by a block end. A piece is valid until the next is asked for. A
    line that may reach MAX_LINE_CHARS raises _Decline: the exact way reads that file."""
    buf = _buffer("jsonl", _JSONL_BLOCK)
    with _open(path) as fh:
        rest, first = b"", True
        while True:
            n = _read_into(fh, buf, _JSONL_BLOCK)
            start = 3 if first and buf.startswith(b"\xef\xbb\xbf", 0, n) else 0
            first = False
            if n <= start:
                if len(rest) >= MAX_LINE_CHARS - 1:
                    raise _Decline
                if rest:
                    yield rest, 0, len(rest), 1, rest.startswith(b"{")
                return
            head = buf.find(b"\n", start, n)
            if len(rest) + ((n if head < 0 else head) - start) >= MAX_LINE_CHARS - 1 or _long_line(buf, start, n):
                raise _Decline
            if head < 0:
                rest += buf[start:n]
                continue
            if rest:                                        # the line the previous block cut
                line = rest + buf[start:head + 1]
                yield line, 0, len(line), 1, line.startswith(b"{")
                start = head + 1
            cut = max(buf.rfind(b"\n", start, n) + 1, start)
            if cut > start:
                yield buf, start, cut, *_lines(buf, start, cut)
            rest = bytes(buf[cut:n])


def _lines(data: bytearray, start: int, end: int) -> tuple[int, bool]:
    """How many lines ``data[start:end]`` holds (each ends with a newline) and whether each opens
    an object: a find per line (memchr) is ~10x faster than bytes.count on lines of kilobytes."""
    n, objects = 0, True
    while start < end:
        objects = objects and data[start] == 0x7B           # "{"
        start = data.find(b"\n", start, end) + 1
        n += 1
    return n, objects


def _long_line(block: bytes | bytearray, start: int, end: int) -> bool:
    """Whether a line in ``block[start:end]`` may reach MAX_LINE_CHARS: a line end in every
    half-limit window rules it out (a longer line would hold a whole window), and bytes are never
    fewer than characters."""
    half = MAX_LINE_CHARS // 2
    return any(block.find(b"\n", s, s + half) < 0 for s in range(start, end - half + 1, half))


_ARROW_SCHEMA = pa.schema([("playlist_id", pa.string()), ("title", pa.string()),
                           ("tracks", pa.list_(pa.struct([(k, pa.string()) for k in ("track_id", "artist_id", "album_id")])))])
# a field the schema does not name is refused (msgspec reads such files): Arrow would accept what
# msgspec and json refuse inside it (NaN, nesting deeper than Python's recursion limit)
_ARROW_PARSE = pa_json.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="error")


def _decode_jsonl_arrow(path: Path) -> _Columns | None:
    """The file's columns decoded by Arrow's JSON reader straight into Arrow arrays (no Python
    object per entry, ~25 % less CPU than msgspec's decoding and the conversion), when every line
    is one object of the schema's fields only, every value text or null. None otherwise: msgspec,
    which takes integer ids and other fields, decides. Arrow refuses what msgspec refuses (a lone
    surrogate, a duplicate key, a number for a text); what it would let through is checked here:
    bytes that are not UTF-8, a null among the tracks, a file where no record has tracks."""
    chunks: list[pa.Table] = []
    line = 0
    for data, start, end, n, objects in _blocks(path):
        view = memoryview(data)[start:end]
        if not objects:
            return None                                 # a blank line, a line that is not an object
        try:
            pa.StringArray.from_buffers(1, pa.array([0, end - start], pa.int32()).buffers()[1],
                                        pa.py_buffer(view)).validate(full=True)
            table = pa_json.read_json(pa.BufferReader(pa.py_buffer(view)), parse_options=_ARROW_PARSE,
                                      read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 26))
        except (pa.ArrowException, UnicodeError):
            return None
        if table.num_rows != n:                         # two values on a line
            return None
        chunks.append(table)
        line += n
    table = pa.concat_tables(chunks) if chunks else _ARROW_SCHEMA.empty_table()
    tracks = table.column("tracks").combine_chunks()
    if len(tracks) and tracks.null_count == len(tracks):
        return None                                     # the exact way refuses the file, or says why not
    entries = pc.list_flatten(tracks)
    if entries.null_count:                              # a null entry: the schema refuses it
        return None
    lengths = pc.fill_null(pc.list_value_length(tracks), 0).to_numpy().astype(np.int64)
    values = {c: pc.struct_field(entries, [i]) for i, c in enumerate(COLUMNS)}
    return _Columns(table.column("playlist_id").to_pylist(), table.column("title").to_pylist(),
                    np.arange(1, line + 1, dtype=np.int64), lengths, values)


def _decode_jsonl(path: Path) -> _Columns | None:
    arrow = _decode_jsonl_arrow(path)
    if arrow is not None:
        return arrow
    recs: list = []
    rows: list[np.ndarray] = []
    line = 0
    for data, start, end, n, objects in _blocks(path):
        got = None
        # every line opens an object: then none is blank, and msgspec's reader of lines (values one
        # after the other) gives one record a line exactly when it gives n of them
        if objects:
            got = _RECORD.decode_lines(memoryview(data)[start:end])
            if len(got) == n:
                rows.append(np.arange(line + 1, line + n + 1, dtype=np.int64))
            else:
                got = None
        if got is None:                                     # line by line, numbering the blank ones too
            lines = data[start:end].split(b"\n")[:n]
            keep = [i for i, text in enumerate(lines) if text.strip()]
            rows.append(np.asarray(keep, dtype=np.int64) + line + 1)
            # one record a line: msgspec refuses a second value on a line, as json.loads does
            got = list(map(_RECORD.decode, [lines[i] for i in keep]))
        recs.extend(got)
        line += n
    if recs and all(r.tracks is msgspec.UNSET for r in recs):
        return None                                     # the exact way refuses the file, naming row 1
    tracks = [None if r.tracks is msgspec.UNSET else r.tracks for r in recs]
    return _columns([r.playlist_id for r in recs], [r.title for r in recs], tracks,
                    np.concatenate(rows) if rows else np.zeros(0, np.int64), ("track_id", "artist_id", "album_id"))


# --- many files -------------------------------------------------------------------------------------------

@dataclass
class PlaylistCodes:
    """Valid playlists and their entries as codes, plus every rejection."""

    playlist_ids: np.ndarray      # object (str)
    titles: np.ndarray            # object (str)
    sources: np.ndarray           # object (str)
    rows: np.ndarray              # int64
    n_tracks: np.ndarray          # int32
    max_artist: np.ndarray        # int32
    max_album: np.ndarray         # int32
    entry_playlist: np.ndarray    # int32 into the playlists
    entry_track: np.ndarray       # int32 into ``tracks``
    entry_artist: np.ndarray      # int32 into ``artists``
    entry_album: np.ndarray       # int32 into ``albums``
    tracks: np.ndarray            # object (str)
    artists: np.ndarray
    albums: np.ndarray
    rejections: list[Rejection]
    complete: bool = True         # False: only playlists naming a context have their entries
    contexts: tuple[str, ...] | None = None   # the contexts ``context_bits`` refer to
    context_bits: np.ndarray | None = None    # int64 per playlist: bit j set when its title names contexts[j]

    def to_table(self) -> pl.PlaylistTable:
        if not self.complete:
            raise ValueError("these codes hold the entries of context playlists only: scan without contexts")
        playlists = pd.DataFrame({"playlist_id": self.playlist_ids, "title": self.titles,
                                  "source": self.sources, "row": self.rows})
        entries = pd.DataFrame({"playlist_id": self.playlist_ids[self.entry_playlist],
                                "track_id": self.tracks[self.entry_track],
                                "artist_id": self.artists[self.entry_artist],
                                "album_id": self.albums[self.entry_album]})
        return pl.PlaylistTable(playlists, entries, list(self.rejections))

    @classmethod
    def from_table(cls, table: pl.PlaylistTable) -> PlaylistCodes:
        """A table read some other way (tests, a frame built by hand) as codes; entries of unknown
        playlists are left out and a playlist's repeated tracks are counted once."""
        p, e = table.playlists, table.entries
        ids = p["playlist_id"].to_numpy(dtype=object)
        entry_pl = pd.Index(ids).get_indexer(e["playlist_id"])
        e = e[entry_pl >= 0].assign(_p=entry_pl[entry_pl >= 0]).drop_duplicates(["_p", "track_id"])
        coded = {}
        for c in COLUMNS:
            codes, uniques = pd.factorize(e[f"{c}_id"].to_numpy(dtype=object))
            coded[c] = (codes.astype(np.int32), np.asarray(uniques, dtype=object))
        entry_pl = e["_p"].to_numpy(np.int32)
        n = len(ids)
        return cls(ids, p["title"].to_numpy(dtype=object),
                   p["source"].to_numpy(dtype=object) if "source" in p else np.full(n, "", dtype=object),
                   p["row"].to_numpy(np.int64) if "row" in p else np.arange(1, n + 1),
                   np.bincount(entry_pl, minlength=n).astype(np.int32),
                   _group_max(entry_pl, coded["artist"][0], n), _group_max(entry_pl, coded["album"][0], n),
                   entry_pl, coded["track"][0], coded["artist"][0], coded["album"][0],
                   coded["track"][1], coded["artist"][1], coded["album"][1], list(table.rejections))


class _Merger:
    """Batches in file order -> PlaylistCodes; a playlist id seen in an earlier file makes a duplicate."""

    def __init__(self, catalogue: StringTable | None) -> None:
        self.catalogue = catalogue
        self.tables = {c: StringTable() for c in COLUMNS if not (c == "track" and catalogue is not None)}
        self.maps: dict[int, dict[str, _Growing]] = {}        # worker -> column -> worker code -> code
        self.first: dict[str, tuple[str, int]] = {}
        self.rejections: list[Rejection] = []
        self.late: list[Rejection] = []
        self.parts: dict[str, list] = {k: [] for k in ("ids", "titles", "sources", "rows", "n_tracks", "max_artist",
                                                        "max_album", "entry_playlist", "context_bits", *COLUMNS)}
        self.n_playlists = 0

    def add(self, b: FileBatch) -> None:
        maps = self.maps.setdefault(b.worker, {c: _Growing() for c in self.tables})
        for c, (strings, h) in b.new_strings.items():
            if len(strings):
                maps[c].extend(self.tables[c].lookup(strings, h))
        self.rejections.extend(b.rejections)
        first = self.first
        seen = list(map(first.get, b.playlist_ids))          # a file's own ids are distinct already
        keep = np.fromiter((s is None for s in seen), dtype=bool, count=len(seen))
        rows = b.rows.tolist()
        if keep.all():
            first.update(zip(b.playlist_ids, [(b.source, r) for r in rows], strict=True))
        else:
            first.update((b.playlist_ids[i], (b.source, rows[i])) for i in np.flatnonzero(keep).tolist())
        for i in np.flatnonzero(~keep).tolist():
            src, row = seen[i]
            self.late.append(Rejection(b.source, rows[i], f"duplicate playlist_id: first seen in {src} row {row}",
                                       playlist_id=b.playlist_ids[i], raw=str(b.titles[i])))
        kept = np.flatnonzero(keep)
        parts = self.parts
        parts["ids"].append(np.asarray(b.playlist_ids, dtype=object)[kept])
        parts["titles"].append(np.asarray(b.titles, dtype=object)[kept])
        parts["sources"].append(np.full(len(kept), b.source, dtype=object))
        parts["rows"].append(b.rows[kept])
        for k in ("n_tracks", "max_artist", "max_album"):
            parts[k].append(getattr(b, k)[kept])
        parts["context_bits"].append(b.context_bits[kept])
        take = keep[b.entry_playlist] if len(kept) < len(keep) else slice(None)
        new_index = (np.cumsum(keep) - 1 + self.n_playlists).astype(np.int32)
        parts["entry_playlist"].append(new_index[b.entry_playlist[take]])
        for c in COLUMNS:
            codes = b.entries[c][take]
            parts[c].append(maps[c].values[codes] if c in maps else codes)
        self.n_playlists += len(kept)

    def result(self) -> PlaylistCodes:
        parts = self.parts

        def cat(key: str, dtype) -> np.ndarray:
            chunks = parts.pop(key)
            out = np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)
            chunks.clear()
            return out

        def spelt(c: str) -> np.ndarray:
            table = self.catalogue if c == "track" and self.catalogue is not None else self.tables[c]
            return table.strings().to_numpy(zero_copy_only=False).astype(object)

        return PlaylistCodes(
            cat("ids", object), cat("titles", object), cat("sources", object), cat("rows", np.int64),
            cat("n_tracks", np.int32), cat("max_artist", np.int32), cat("max_album", np.int32),
            cat("entry_playlist", np.int32), cat("track", np.int32), cat("artist", np.int32), cat("album", np.int32),
            *(spelt(c) for c in COLUMNS), self.rejections + self.late, context_bits=cat("context_bits", np.int64))


_STATE: dict = {}


def _init_worker(catalogue: StringTable | None, known: set | Path | None, fast: bool,
                 contexts: tuple[str, ...] | None) -> None:
    _STATE["worker"] = _Worker(catalogue, known, fast, contexts)


def _scan_in_worker(path: Path) -> FileBatch:
    return _STATE["worker"].scan(path)


def _batches(files: list[Path], catalogue: StringTable | None, known: set | Path | None, workers: int, fast: bool,
             contexts: tuple[str, ...] | None) -> Iterator[FileBatch]:
    if workers <= 1:
        worker = _Worker(catalogue, known, fast, contexts)
        worker.id = -1
        yield from (worker.scan(f) for f in files)
        return
    from concurrent.futures import ProcessPoolExecutor

    # the platform's way of starting processes (fork on Linux: the catalogue's table is shared, not
    # copied, nothing is re-imported, as for `ctxtag synth`); results come back in file order, a
    # few files ahead at most, so memory stays bounded whatever the number of files
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(catalogue, known, fast, contexts)) as pool:
        pending: deque = deque()
        queue = iter(files)
        for f in queue:
            pending.append(pool.submit(_scan_in_worker, f))
            if len(pending) >= 2 * workers:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(_scan_in_worker, nxt))
            yield batch


def default_workers(files: list[Path]) -> int:
    """Worker processes worth starting for these files: none for a small input or a single file."""
    if len(files) < 2:
        return 0
    size = sum(f.stat().st_size for f in files)
    return 0 if size < PARALLEL_MIN_BYTES else min(len(files), os.cpu_count() or 1)


def scan_playlists(paths: Iterable[str | Path], known_tracks: Iterable[str] | Path | None = None,
                   workers: int | None = None, fast: bool = True, contexts: Sequence[str] | None = None
                   ) -> PlaylistCodes:
    """Read and validate playlist files of any supported format (a directory reads all of them),
    one file at a time, into codes. ``known_tracks``: the catalogue's track ids (entries of other
    tracks are quarantined), or the path of the catalogue to read them from (as ``known_track_ids``
    does: no check when it does not exist). ``workers``: processes (None: by input size; 0: this
    one); ``fast=False`` sends every file the exact way (for comparisons). ``contexts``: keep the
    entries of playlists whose title names one of them, and only those (all labelling reads; the
    codes then cannot be spelt out as a table)."""
    files = collect_files(paths, pl._known, "playlist")
    for f in files:
        pl.detect_format(f)             # an unknown format named outright is an error, here not in a worker
    if known_tracks is not None and not isinstance(known_tracks, Path | set | frozenset):
        known_tracks = set(known_tracks)
    catalogue, known = catalogue_table(known_tracks)
    merger = _Merger(catalogue)
    n = default_workers(files) if workers is None else workers
    for batch in _batches(files, catalogue, known, n, fast, None if contexts is None else tuple(contexts)):
        merger.add(batch)
    codes = merger.result()
    codes.complete = contexts is None
    if contexts is not None:
        codes.contexts = tuple(contexts)
    else:
        codes.context_bits = None
    return codes
