"""Arrow string arrays as NumPy, for vectorised passes over their bytes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def string_spans(arr: pa.Array, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A string (or binary) array's n + 1 offsets (int64, from 0) and its bytes, ``pad`` zero bytes
    after them (reads a few past the last string's end stay in bounds); a slice's own bytes only.
    Null slots keep their spans (usually empty)."""
    if not len(arr):
        return np.zeros(1, np.int64), np.zeros(pad, np.uint8)
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    _, offsets, data = arr.buffers()
    offs = np.frombuffer(offsets, np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]
    raw = np.frombuffer(data, np.uint8)[offs[0]:offs[-1]] if data is not None else np.zeros(0, np.uint8)
    return (offs - offs[0]).astype(np.int64), np.concatenate([raw, np.zeros(pad, np.uint8)]) if pad else raw
