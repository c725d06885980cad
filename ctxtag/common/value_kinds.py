"""What kind of value a cell holds, as a quarantine reason names it ("text", "integer", "list", ...).

Drops in JSON or parquet carry types, and a field of the wrong type (an id that is an object, a
title that is a number) is a bad row like a missing field: both readers (playlists, listening
logs) check kinds here before turning values into text, so ``{"a": 1}`` never becomes an id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def kind(value: object) -> str:
    """A value's kind as a reason names it."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | np.integer):
        return "integer"
    if isinstance(value, float | np.floating):
        return "integer" if float(value).is_integer() else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple | np.ndarray):
        return "list"
    return type(value).__name__


def kinds(series: pd.Series) -> pd.Series:
    """``kind`` per value; typed columns (parquet, CSV text) without a call per value."""
    if pd.api.types.is_bool_dtype(series):
        return pd.Series("boolean", index=series.index).where(series.notna(), "missing")
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_string_dtype(series) and series.dtype != object:
        name = "integer" if pd.api.types.is_integer_dtype(series) else "text"
        return pd.Series(name, index=series.index).where(series.notna(), "missing")
    if pd.api.types.is_float_dtype(series):
        integral = series == series.round()
        return pd.Series(np.where(integral, "integer", "number"), index=series.index).where(series.notna(), "missing")
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return pd.Series("text", index=series.index).where(series.notna(), "missing")   # all text: ~30x faster
    if series.dtype == object:
        return series.map(kind)
    return pd.Series(str(series.dtype), index=series.index).where(series.notna(), "missing")
