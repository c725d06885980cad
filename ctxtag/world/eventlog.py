"""Writing listening events fast: ISO 8601 timestamps built as bytes (no per-row Python), and CSV
written by pyarrow, chunk by chunk, in exactly the bytes pandas' ``to_csv`` wrote before.

Layout under the world's folder: ``listening_logs/YYYY-MM-DD.csv`` per local day for the first
chunk (the whole demo world) and ``YYYY-MM-DD.partNNNN.csv`` for chunk NNNN >= 1, each sorted by
local time; ``truth/event_contexts.csv`` gets every chunk appended in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctxtag.vocabulary import DEVICES, NETWORKS
from ctxtag.world.listeners import FEEDBACK, EventBatch
from ctxtag.world.profiles import CONTEXT_SITUATION

LOG_COLUMNS = ("user_id", "track_id", "timestamp", "device", "network", "location", "age", "gender",
               "context", "feedback")
TRUTH_COLUMNS = ("user_id", "track_id", "timestamp", "true_context")
# no value of the generated world holds a comma, quote or line break; pyarrow raises if one did
_CSV = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=1 << 16)
_DAY = 86_400


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints as a (n, width) uint8 matrix."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = ord("0") + v % 10
        v = v // 10
    return out


def _clock() -> np.ndarray:
    """'HH:MM:SS' of every second of a day, (86400, 8) uint8."""
    s = np.arange(_DAY)
    out = np.full((_DAY, 8), ord(":"), dtype=np.uint8)
    out[:, 0:2], out[:, 3:5], out[:, 6:8] = _digits(s // 3600, 2), _digits(s // 60 % 60, 2), _digits(s % 60, 2)
    return out


_CLOCK: np.ndarray | None = None


def offset_text(seconds: int) -> str:
    """A UTC offset as datetime.isoformat writes it: +01:00, -03:00 (+HH:MM:SS if it has seconds)."""
    sign = "-" if seconds < 0 else "+"
    hh, rest = divmod(abs(int(seconds)), 3600)
    mm, ss = divmod(rest, 60)
    return f"{sign}{hh:02d}:{mm:02d}" + (f":{ss:02d}" if ss else "")


def timestamps(wall: np.ndarray, offset: np.ndarray) -> pa.Array:
    """ISO 8601 text with the UTC offset (``2026-01-05T08:00:44+01:00``, what Timestamp.isoformat
    writes for whole seconds) of local wall-clock seconds since the epoch and their offsets.
    Built as a byte matrix from small tables (the days seen, the 86,400 seconds of a day, the
    offsets seen) and handed to arrow without a copy."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = _clock()
    wall, offset = np.asarray(wall, dtype=np.int64), np.asarray(offset, dtype=np.int64)
    n = len(wall)
    if n == 0:
        return pa.array([], type=pa.string())
    day = wall // _DAY
    first = int(day.min())
    dates = np.arange(first, int(day.max()) + 1).astype("M8[D]")
    date_tab = np.frombuffer(np.datetime_as_string(dates, unit="D").astype("S10").tobytes(), dtype=np.uint8)
    if len(date_tab) != 10 * len(dates):
        raise ValueError("timestamps need four-digit years")
    seen, which = np.unique(offset, return_inverse=True)
    suffix = [offset_text(s).encode() for s in seen]
    stamp = np.empty((n, 19), dtype=np.uint8)
    stamp[:, :10] = date_tab.reshape(-1, 10)[day - first]
    stamp[:, 10] = ord("T")
    stamp[:, 11:] = _CLOCK[wall - day * _DAY]
    width = {len(s) for s in suffix}
    if len(width) > 1:          # offsets with and without seconds: join as text
        text = pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(n + 1, dtype=np.int64).astype(np.int32) * 19),
                                           pa.py_buffer(stamp))
        return pc.binary_join_element_wise(text, pa.array([s.decode() for s in suffix]).take(pa.array(which)), "")
    w = 19 + width.pop()
    full = np.empty((n, w), dtype=np.uint8)
    full[:, :19] = stamp
    full[:, 19:] = np.frombuffer(b"".join(suffix), dtype=np.uint8).reshape(len(suffix), -1)[which]
    kind, index = (pa.string(), np.int32) if n * w < 2**31 else (pa.large_string(), np.int64)
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.arange(n + 1, dtype=index) * w),
                                           pa.py_buffer(full)])


def _text(values: Sequence | np.ndarray) -> pa.Array:
    """Values as arrow text, a missing one ('' / None / NaN) as ''; floats as pandas writes them."""
    arr = np.asarray(values)
    missing = pd.isna(arr)
    text = arr.astype(str)          # float64 59.0 -> '59.0', as DataFrame.to_csv writes it
    text[missing] = ""
    return pa.array(text.tolist(), type=pa.string())


class EventLog:
    """Writes event batches as the raw world's listening logs and the truth of their contexts."""

    def __init__(self, out: Path, contexts: Sequence[str], tracks: pd.DataFrame, users: pd.DataFrame):
        self.out = Path(out)
        (self.out / "listening_logs").mkdir(parents=True, exist_ok=True)
        (self.out / "truth").mkdir(parents=True, exist_ok=True)
        self.user_id = _text(users["user_id"].to_numpy())
        self.age = _text(users["age"].to_numpy(dtype=float))
        self.gender = _text(users["gender"].to_numpy(dtype=object))
        self.track_id = _text(tracks["track_id"].to_numpy())
        self.device, self.network = _text(DEVICES), _text(NETWORKS)
        self.location = _text([CONTEXT_SITUATION[c][4] for c in contexts] + [""])    # last: unknown
        self.context = _text([*contexts, ""])                                       # last: not named
        self.true_context = _text(contexts)
        self.feedback = _text(FEEDBACK)
        self.m = len(contexts)
        self.rows = 0
        self._truth = pa.OSFile(str(self.out / "truth/event_contexts.csv"), "wb")
        self._truth.write((",".join(TRUTH_COLUMNS) + "\n").encode())

    def write(self, batch: EventBatch, feedback: np.ndarray, part: int = 0) -> None:
        """One batch (sorted by local time): a file per local day, rows appended to the truth."""
        day = batch.local.astype("M8[D]")
        cuts = [0, *(np.flatnonzero(day[1:] != day[:-1]) + 1).tolist(), len(batch)]
        suffix = "" if part == 0 else f".part{part:04d}"
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            if a == b:
                continue
            rows = slice(a, b)
            user = pa.array(batch.user[rows])
            common = {"user_id": self.user_id.take(user),
                      "track_id": self.track_id.take(pa.array(batch.track[rows])),
                      "timestamp": timestamps(batch.wall[rows], batch.offset[rows])}
            ctx = batch.context[rows]
            log = pa.table({
                **common,
                "device": self.device.take(pa.array(batch.device[rows])),
                "network": self.network.take(pa.array(batch.network[rows])),
                "location": self.location.take(pa.array(np.where(batch.located[rows], ctx, self.m))),
                "age": self.age.take(user),
                "gender": self.gender.take(user),
                "context": self.context.take(pa.array(np.where(batch.labelled[rows], ctx, self.m))),
                "feedback": self.feedback.take(pa.array(feedback[rows])),
            })
            with pa.OSFile(str(self.out / f"listening_logs/{day[a]}{suffix}.csv"), "wb") as sink:
                sink.write((",".join(LOG_COLUMNS) + "\n").encode())
                pacsv.write_csv(log, sink, _CSV)
            pacsv.write_csv(pa.table({**common, "true_context": self.true_context.take(pa.array(ctx))}),
                            self._truth, _CSV)
        self.rows += len(batch)

    def close(self) -> None:
        self._truth.close()
