"""Numeric inputs of the stream models, in named blocks, from the joined stream frame.

One place turns the Feast columns into matrices, for training, evaluation and serving alike:
- audio: the tagger's 256-d embedding of the track (the audio branch's input)
- audio_probs: the tagger's context probabilities (the audio-only model's output)
- user: listening-history embedding, per-context shares, log stream count
- situation: the stream's device and network (one-hot) and its local hour and weekday as sin/cos,
  the user's device/network shares and circular hour/weekday means, age and gender
Missing features (a user's first day, no snapshot yet; an unknown age; a column a serving request
does not carry) become 0 with an indicator column, so no stream is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

STREAM_TIME = ("stream_hour_sin", "stream_hour_cos", "stream_weekday_sin", "stream_weekday_cos")
PROFILE_TIME = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")


def user_feature_columns(frame: pd.DataFrame) -> list[str]:
    """The user features (as Feast serves them) among a frame's columns: the context model's
    optional user inputs."""
    return [c for c in frame.columns if c.startswith(("ctx_share_", "device_share_", "network_share_"))
            or c in ("n_streams", "history_embedding", *PROFILE_TIME)]


def _column(frame: Mapping, name: str, n: int) -> np.ndarray:
    """A column as an array; absent (a serving request carries only some inputs) = all missing."""
    return np.asarray(frame[name]) if name in frame else np.full(n, None, dtype=object)


def _as_float(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind not in "fiub":                 # objects: None, or a value that is not a number
        col = pd.to_numeric(pd.Series(col, dtype=object), errors="coerce").to_numpy(np.float64)
    return col.astype(np.float64, copy=False)


def _numbers(frame: Mapping, names: Sequence[str], n: int) -> np.ndarray:
    """Numeric columns -> (n, len(names)) float32; missing values (None, NaN, non-numbers) are 0."""
    out = np.zeros((n, len(names)))
    for j, name in enumerate(names):
        if name in frame:
            out[:, j] = _as_float(np.asarray(frame[name]))
    out[np.isnan(out)] = 0.0
    return out.astype(np.float32)


def _missing(frame: Mapping, name: str, n: int) -> np.ndarray:
    """(n,) bool: which rows lack the number (absent, None, NaN or not a number)."""
    return np.isnan(_as_float(np.asarray(frame[name]))) if name in frame else np.ones(n, dtype=bool)


def _present(col) -> np.ndarray:
    """(n,) bool: which entries of a column of arrays are there."""
    if isinstance(col, pd.Series):
        return col.notna().to_numpy()
    return np.array([v is not None and not (isinstance(v, float) and v != v) for v in col], dtype=bool)


def _stack(frame: Mapping, name: str, n: int, dim: int) -> np.ndarray:
    """A column of arrays -> (n, dim) float32; missing entries are zeros."""
    out = np.zeros((n, dim), dtype=np.float32)
    if name not in frame:
        return out
    col = frame[name]
    ok = _present(col)
    if ok.any():
        values = col[ok].to_numpy() if isinstance(col, pd.Series) else [v for v, k in zip(col, ok, strict=True) if k]
        out[ok] = np.stack(values).astype(np.float32)
    return out


def _one_hot(frame: Mapping, name: str, n: int, categories: Sequence[str]) -> np.ndarray:
    values = _column(frame, name, n).astype(object)
    values[pd.isna(values)] = None                   # pd.NA would not compare to a category
    return (values[:, None] == np.asarray(list(categories), dtype=object)[None, :]).astype(np.float32)


def blocks(frame: Mapping, contexts: Sequence[str], devices: Sequence[str], networks: Sequence[str],
           genders: Sequence[str], history_dim: int, audio_dim: int = 256) -> dict[str, np.ndarray]:
    """``frame``: a DataFrame, or any mapping of column -> equal-length values (a serving request
    builds a dict of one-element lists: no one-row DataFrame on the request path)."""
    n = len(next(iter(frame.values()))) if not isinstance(frame, pd.DataFrame) else len(frame)
    m = len(contexts)
    has_history = (~_missing(frame, "n_streams", n)).astype(np.float32)[:, None]
    shares = _numbers(frame, [f"ctx_share_{c}" for c in contexts], n)
    n_streams = _numbers(frame, ["n_streams"], n)
    user = np.hstack([_stack(frame, "history_embedding", n, history_dim), shares, np.log1p(n_streams), has_history])
    profile = _numbers(frame, [f"device_share_{d}" for d in devices] + [f"network_share_{k}" for k in networks]
                       + list(PROFILE_TIME), n)
    situation = np.hstack([
        _one_hot(frame, "device", n, devices), _one_hot(frame, "network", n, networks),
        _numbers(frame, STREAM_TIME, n),
        profile,
        _numbers(frame, ["age"], n) / np.float32(100.0), _missing(frame, "age", n)[:, None].astype(np.float32),
        _one_hot(frame, "gender", n, genders),
    ])
    return {
        "audio": _stack(frame, "audio_embedding", n, audio_dim),
        "audio_probs": _stack(frame, "context_probs", n, m),
        "user": user,
        "situation": situation,
    }


def targets(frame: pd.DataFrame, contexts: Sequence[str]) -> np.ndarray:
    """The stream's context as a class index."""
    codes = pd.Categorical(frame["context"], categories=list(contexts)).codes
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} stream(s) carry a context outside params.contexts")
    return codes.astype(np.int64)
