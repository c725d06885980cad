"""Reading and writing the tables that pass between stages."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctxtag.common.quarantine import InputError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed over ``path`` only when the block
    succeeds, so a killed writer leaves the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_SWEPT: set[Path] = set()


def _sweep(folder: Path) -> None:
    """Remove the temp files that writers killed earlier left in ``folder`` — once per folder and
    process: scanning at every write would make a folder of n entries (the mel cache) cost n^2."""
    if folder in _SWEPT:
        return
    for stale in folder.glob(".*.*.tmp"):
        pid = re.fullmatch(r"\..+\.(\d+)\.tmp", stale.name)     # only atomic_path's own temps
        if pid and not process_alive(pid.group(1)):
            stale.unlink(missing_ok=True)
    _SWEPT.add(folder)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A staging folder beside ``path`` to fill; swapped in for ``path`` only when the block
    succeeds. A writer killed while filling it leaves the old folder in place (the next writer
    clears the staging folder); killed between the two renames, it leaves the old folder aside,
    which the next writer puts back first — never a half-written one under the real name."""
    path = Path(path)
    staging, old = path.with_name(f".{path.name}.staging"), path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():          # killed between the two renames: put it back
        old.rename(path)
    for stale in (staging, old):
        if stale.exists():
            shutil.rmtree(stale)
    staging.mkdir(parents=True)
    try:
        yield staging
        if path.exists():
            path.rename(old)
        staging.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def process_alive(pid: str) -> bool:
    """Whether the process that named a temp file still runs (then its write is in progress)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc, timeout_s: float = 30.0) -> None:
    """End ``proc`` (a Popen started with ``start_new_session=True``) and every process of its
    group: SIGTERM, up to ``timeout_s`` for it to exit, then SIGKILL for whatever is left (a
    server's forked workers can outlive it: `feast serve`'s gunicorn master did)."""
    import contextlib
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def source_digest(modules) -> str:
    """A short hash of Python modules' source, named: a key part that changes when the code that
    made a cached result does."""
    import hashlib

    h = hashlib.sha256()
    for module in modules:
        h.update(module.__name__.encode() + b"\0" + Path(module.__file__).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: Any, path: Path) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n", path)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


def read_split(path: Path) -> pd.Series:
    """The tagger's split (`ctxtag split`): split name by track_id."""
    return pd.read_csv(path, dtype=str).set_index("track_id")["split"]


def read_matrix(path: Path, contexts: Sequence[str], id_column: str = "track_id") -> tuple[np.ndarray, np.ndarray]:
    """A (track_id + one column per context) CSV -> (ids, int matrix), checking the columns."""
    frame = pd.read_csv(path, dtype={id_column: str})
    missing = [c for c in [id_column, *contexts] if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}")
    values = frame[list(contexts)]
    bad = values.isna().any(axis=1) | (values < 0).any(axis=1)
    if bad.any():
        raise InputError(path, "missing or negative value", int(np.argmax(bad.to_numpy())) + 2)
    if frame[id_column].duplicated().any():
        row = int(np.argmax(frame[id_column].duplicated().to_numpy())) + 2
        raise InputError(path, f"duplicate {id_column}", row)
    return frame[id_column].to_numpy(dtype=object), values.to_numpy(dtype=np.int64)


def write_matrix(ids: np.ndarray, values: np.ndarray, contexts: Sequence[str], path: Path,
                 id_column: str = "track_id") -> None:
    frame = pd.DataFrame(values, columns=list(contexts))
    frame.insert(0, id_column, ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def collect_files(paths: Iterable[str | Path], accept: Callable[[Path], bool], what: str) -> list[Path]:
    """Files named in ``paths``, directories expanded to the accepted files below them."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file())
            files.extend(f for f in found if accept(f))
            for f in found:                       # never skipped in silence (hidden files aside)
                if not accept(f) and not f.name.startswith("."):
                    print(f"warning: {f}: skipped, not a {what} file by its name", file=sys.stderr)
        elif p.exists():
            files.append(p)
        else:
            raise InputError(p, f"{what} file not found")
    return files


# bytes that were not UTF-8, as text read with errors='surrogateescape' holds them, and lone
# surrogates from JSON escapes ("\ud800"): neither can be written as UTF-8
UNDECODABLE = "[\ud800-\udfff]"


def undecodable(series: pd.Series) -> pd.Series:
    """Rows whose text holds bytes that were not UTF-8."""
    return series.astype("string").str.contains(UNDECODABLE, regex=True).fillna(False).astype(bool)


def known_track_ids(catalogue: Path | None) -> set[str] | None:
    """Track ids of the catalogue, or None (no check) when there is none."""
    if catalogue is None or not Path(catalogue).exists():
        return None
    return set(pd.read_csv(catalogue, usecols=["track_id"], dtype=str)["track_id"])


def catalogue_id_array(path: Path):
    """``known_track_ids(path)`` as far as membership of an id goes, as an Arrow string array
    (repeats possible), read by Arrow's multi-threaded CSV reader (~5x pandas' on 2M rows; no
    Python string per id): pandas turns its NA spellings ("NA", "null", "", ...) into NaN, so they
    are no ids here either. None when Arrow will not read the file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pandas._libs.parsers import STR_NA_VALUES
    from pyarrow import csv as pacsv

    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(
                                   include_columns=["track_id"], column_types={"track_id": pa.string()},
                                   strings_can_be_null=False, null_values=[]))
    except Exception:                    # anything unusual: pandas reads it (or says why it cannot)
        return None
    ids = table.column("track_id").combine_chunks()
    return ids.filter(pc.invert(pc.is_in(ids, value_set=pa.array(sorted(STR_NA_VALUES)))))


def catalogue_ids(path: Path | None):
    """The catalogue file's track ids as an Arrow string array (repeats possible): the ids of
    ``known_track_ids``' set without a Python string each (at 4.2M tracks the set took ~5 s), or
    None when there is no catalogue. Arrow reads the file (``catalogue_id_array``); one it refuses,
    pandas does."""
    if path is None or not Path(path).exists():
        return None
    ids = catalogue_id_array(Path(path))
    if ids is None:
        import pyarrow as pa

        # pandas reads its NA spellings as a float NaN: no id
        ids = pa.array([k for k in known_track_ids(path) if isinstance(k, str)], type=pa.string())
    return ids


def audio_paths(catalogue: Path | None) -> pd.Series:
    """track_id -> audio_path (relative to paths.audio_root) for catalogue tracks with audio."""
    if catalogue is None or not Path(catalogue).exists():
        raise InputError(catalogue or "paths.tracks", "a track catalogue with audio_path is needed")
    frame = pd.read_csv(catalogue, dtype={"track_id": str})
    if "audio_path" not in frame.columns:
        raise InputError(catalogue, "missing required column 'audio_path'")
    audio = frame.drop_duplicates("track_id").set_index("track_id")["audio_path"]
    return audio[audio.notna()]
