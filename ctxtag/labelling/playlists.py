"""Read playlists from JSON lines, parquet, CSV or Spotify Million Playlist Dataset slices.

Every format is flattened into one long table (one row per playlist entry) and validated by
the same vectorised rules, so a bad row is treated alike whatever file it came in. Invalid rows
go to the quarantine with their reason; the raw files are only ever read. One bad record costs
only itself: a record of the wrong shape (not an object, tracks not a list, ids that are objects,
a title that is a number, a 1 MB title) is quarantined like a missing field. A file is refused
as a whole (one quarantine entry, row 0) only when it cannot be read at all — not the format its
name says, no required columns — and the other files go on.

Row numbers in reasons: JSON lines and CSV give the 1-based line number where the record starts
(ctxtag.common.text_rows), parquet the 1-based record, MPD slices the 1-based position in the
slice's "playlists" array.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.io import undecodable
from ctxtag.common.quarantine import InputError, Rejection
from ctxtag.common.text_rows import (
    MAX_LINE_CHARS,
    headerless,
    open_text,
    read_csv_rows,
    read_json_lines,
)
from ctxtag.common.value_kinds import kind, kinds

ENTRY_COLUMNS = ["playlist_id", "title", "track_id", "artist_id", "album_id"]
_TRACK_KEYS = ["track_id", "artist_id", "album_id"]
_MPD_KEYS = {"track_uri": "track_id", "artist_uri": "artist_id", "album_uri": "album_id"}
# Spotify caps titles at 100 characters and its ids at 22 (62 as URIs): these are generous, and
# bound what one row can carry into the matcher and the quarantine
MAX_TITLE_CHARS = 1000
MAX_ID_CHARS = 256


@dataclass
class PlaylistTable:
    """Valid playlists and their entries, plus everything that was rejected."""

    playlists: pd.DataFrame   # playlist_id, title, source, row
    entries: pd.DataFrame     # playlist_id, track_id, artist_id, album_id
    rejections: list[Rejection]


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")           # text formats may come gzipped
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet") and name == path.name.lower():
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(".json"):
        return "mpd"
    raise InputError(path, "unknown playlist format (expected .jsonl, .csv, .tsv or MPD .json, each optionally "
                           ".gz, or .parquet)")


def _record_problem(rec: object) -> str | None:
    """What makes a whole record unusable before its entries are looked at, or None."""
    if not isinstance(rec, dict):
        return f"not a playlist object: a JSON {'null' if rec is None else kind(rec)}"
    tracks = rec.get("tracks")
    if tracks is not None and not isinstance(tracks, list | np.ndarray):
        return f"'tracks' must be a list of {{track_id, artist_id, album_id}}, not {kind(tracks)}"
    return None


def _records_to_flat(records: list, rows: list[int]) -> pd.DataFrame:
    """Nested playlist records -> one row per entry; a record without usable tracks keeps one row.
    A record that is not an object, or whose tracks are not a list, keeps one row with its reason."""
    problem = [_record_problem(r) for r in records]
    records = [r if p is None else {k: r.get(k) for k in ("playlist_id", "title")} if isinstance(r, dict) else {}
               for r, p in zip(records, problem, strict=True)]
    frame = pd.DataFrame(
        {
            "playlist_id": [r.get("playlist_id") for r in records],
            "title": [r.get("title") for r in records],
            "tracks": [r.get("tracks") for r in records],
            "row": rows,
            "_problem": problem,
        }
    )
    frame["tracks"] = frame["tracks"].map(lambda t: list(t) if t is not None and len(t) else [None])
    flat = frame.explode("tracks", ignore_index=True)
    tracks = flat.pop("tracks")
    is_dict = tracks.map(lambda t: isinstance(t, dict))
    for key in _TRACK_KEYS:
        flat[key] = [t.get(key) if d else None for t, d in zip(tracks, is_dict, strict=True)]
    flat["_empty"] = (tracks.isna() & flat["_problem"].isna()).to_numpy()
    malformed = (~is_dict & tracks.notna()).to_numpy()
    flat.loc[malformed & flat["_problem"].isna().to_numpy(), "_problem"] = (
        "malformed track entry: expected an object with track_id, artist_id, album_id")
    return flat


def _read_jsonl(path: Path, rejections: list[Rejection]) -> pd.DataFrame:
    records, rows = [], []
    for lineno, line in read_json_lines(path):
        if line is None:
            rejections.append(Rejection(str(path), lineno, f"line longer than {MAX_LINE_CHARS} characters"))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            rejections.append(Rejection(str(path), lineno, f"invalid JSON: {exc.msg}", raw=line))
            continue
        except RecursionError:
            rejections.append(Rejection(str(path), lineno, "invalid JSON: nested too deeply", raw=line[:1000]))
            continue
        records.append(rec)
        rows.append(lineno)
    if records and not any(isinstance(r, dict) and "tracks" in r for r in records):
        raise InputError(path, "missing required field 'tracks' in every record", rows[0])
    return _records_to_flat(records, rows)


def _read_mpd(path: Path, rejections: list[Rejection]) -> pd.DataFrame:
    with open_text(path) as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"invalid JSON: {exc.msg}", exc.lineno) from exc
        except RecursionError as exc:
            raise InputError(path, "invalid JSON: nested too deeply") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
        raise InputError(path, "not a Million Playlist Dataset slice: no 'playlists' array")

    def entry(t: object) -> object:
        return {_MPD_KEYS[k]: t.get(k) for k in _MPD_KEYS} if isinstance(t, dict) else t

    records = [
        {"playlist_id": p.get("pid"), "title": p.get("name"),
         "tracks": [entry(t) for t in p["tracks"]] if isinstance(p.get("tracks"), list) else p.get("tracks")}
        if isinstance(p, dict) else p
        for p in doc["playlists"]
    ]
    return _records_to_flat(records, list(range(1, len(records) + 1)))


def _read_flat_or_nested_frame(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if "tracks" in frame.columns:
        flat = _records_to_flat(frame.drop(columns="row").to_dict(orient="records"), frame["row"].tolist())
        flat.attrs["_nested"] = True
        return flat
    missing = [c for c in ENTRY_COLUMNS if c not in frame.columns]
    if missing and headerless(frame):
        frame = pd.DataFrame(columns=[*ENTRY_COLUMNS, "row"])
    elif missing:
        raise InputError(path, f"missing required column(s) {missing}; found {[c for c in frame.columns if c != 'row']}")
    flat = frame[[*ENTRY_COLUMNS, "row"]].copy()
    flat["_empty"] = flat["track_id"].isna() & flat["artist_id"].isna() & flat["album_id"].isna()
    flat["_problem"] = None
    return flat


def _read_csv(path: Path, rejections: list[Rejection]) -> pd.DataFrame:
    name = path.name.lower().removesuffix(".gz")
    frame, malformed = read_csv_rows(path, sep="\t" if name.endswith(".tsv") else ",")
    rejections.extend(malformed)
    return _read_flat_or_nested_frame(frame, path)


def _read_parquet(path: Path, rejections: list[Rejection]) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return _read_flat_or_nested_frame(frame.assign(row=np.arange(1, len(frame) + 1)), path)


def _as_id(series: pd.Series) -> pd.Series:
    """Ids as strings ("12" and 12 are the same id); missing and blank stay missing."""
    if pd.api.types.is_float_dtype(series):
        present = series.dropna()
        if (present == present.round()).all():
            series = series.astype("Int64")              # 12.0 from a column with NaN -> "12"
    out = series.astype("string").str.strip()
    out = out.mask(out == "")
    return out.astype(object).where(out.notna(), None)


def validate_entries(
    flat: pd.DataFrame, source: Path, nested: bool, known_tracks: set[str] | None = None
) -> PlaylistTable:
    """Apply every row rule; the first failing rule of a row is its quarantine reason."""
    flat = flat.copy()
    reason = pd.Series(None, index=flat.index, dtype="object")

    def mark(mask: pd.Series, text: str | pd.Series) -> None:
        new = mask & reason.isna()
        reason.loc[new] = text if isinstance(text, str) else text[new]

    mark(flat["_problem"].notna(), flat["_problem"])
    # wrong types first, before a value is turned into text ({"a": 1} must not become an id)
    for col in ENTRY_COLUMNS:
        found = kinds(flat[col])
        allowed = ["text", "missing"] if col == "title" else ["text", "integer", "missing"]
        wrong = ~found.isin(allowed)
        mark(wrong, f"{col} must be {'text' if col == 'title' else 'text or an integer'}, not " + found)
        flat[col] = flat[col].astype(object).mask(wrong, None)
    for col in ["playlist_id", *_TRACK_KEYS]:
        flat[col] = _as_id(flat[col])
    flat["title"] = flat["title"].astype("object").where(flat["title"].notna(), None)

    for col in ENTRY_COLUMNS:
        mark(undecodable(flat[col]), f"not valid UTF-8: {col} contains undecodable bytes")
        limit = MAX_TITLE_CHARS if col == "title" else MAX_ID_CHARS
        mark(flat[col].str.len() > limit, f"{col} longer than {limit} characters")
    mark(flat["playlist_id"].isna(), "missing playlist_id")
    mark(flat["title"].isna() | (flat["title"].astype(str).str.strip() == ""), "missing title")
    mark(flat["_empty"], "empty playlist: no tracks")
    for col in _TRACK_KEYS:
        mark(flat[col].isna(), f"missing {col}")

    # One playlist id per record: in nested files a later record reusing an id is a duplicate;
    # in flat files (one row per entry) a row giving the same id another title is. First wins.
    first_row = flat.groupby("playlist_id", dropna=True)["row"].transform("min")
    if nested:
        dup_id = flat["playlist_id"].notna() & (flat["row"] != first_row)
    else:
        first_title = flat.sort_values("row").groupby("playlist_id")["title"].transform("first")
        dup_id = flat["playlist_id"].notna() & (flat["title"] != first_title.reindex(flat.index))
    mark(dup_id, "duplicate playlist_id: first seen at row " + first_row.astype("Int64").astype(str))

    ok = reason.isna()
    dup_track = ok & flat[ok].duplicated(["playlist_id", "track_id"], keep="first").reindex(flat.index, fill_value=False)
    mark(dup_track, "duplicate track_id within the playlist")
    if known_tracks is not None:
        mark(reason.isna() & ~flat["track_id"].isin(known_tracks), "unknown track_id: not in the track catalogue")

    bad = reason.notna()
    rejections = [
        Rejection(str(source), int(r.row), str(r.reason),
                  playlist_id=r.playlist_id, track_id=r.track_id,
                  raw=json.dumps({c: getattr(r, c) for c in ENTRY_COLUMNS}, ensure_ascii=False, default=str))
        for r in flat.loc[bad, ["row", *ENTRY_COLUMNS]].assign(reason=reason[bad]).itertuples(index=False)
    ]
    good = flat.loc[~bad]
    playlists = (
        good.sort_values("row").groupby("playlist_id", sort=False)
        .agg(title=("title", "first"), row=("row", "min")).reset_index()
    )
    playlists["source"] = str(source)
    entries = good[["playlist_id", *_TRACK_KEYS]].reset_index(drop=True)
    return PlaylistTable(playlists[["playlist_id", "title", "source", "row"]], entries, rejections)


# each reader flattens one file; row-level parse failures go to ``rejections``
_READERS = {"jsonl": _read_jsonl, "mpd": _read_mpd, "csv": _read_csv, "parquet": _read_parquet}


def read_playlists(paths: Iterable[str | Path], known_tracks: set[str] | None = None) -> PlaylistTable:
    """Read and validate playlist files of any supported format (a directory reads all of them).
    Files are read one at a time into codes (``scan.scan_playlists``), then spelt out as frames."""
    from ctxtag.labelling.scan import scan_playlists

    return scan_playlists(paths, known_tracks).to_table()


def _known(path: Path) -> bool:
    try:
        detect_format(path)
    except InputError:
        return False
    return True
