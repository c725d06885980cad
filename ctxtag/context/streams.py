"""Labelled streams: the (user, track, situation) -> context examples of ISMIR 2020/2022.

A stream is labelled when the listener named its context (the log's optional ``context``).
Each one is joined with the user's features as of the stream's time (Feast point-in-time join:
the latest daily snapshot at or before it, so nothing from after the stream leaks in) and with
the track's audio features. Track features are content, not history: they are joined by track id
regardless of when the tagger computed them (a point-in-time join would drop every stream older
than the tagger run).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctxtag.platform.feature_store import historical

USER_VIEWS = ("user_listening_history", "user_device_time_profile")


def cyclic_time(hour: np.ndarray, weekday: np.ndarray) -> dict[str, np.ndarray]:
    """A local hour (0-24, fractional) and weekday (0 = Monday) as the stream's cyclic features."""
    return {"stream_hour_sin": np.sin(2 * np.pi * hour / 24), "stream_hour_cos": np.cos(2 * np.pi * hour / 24),
            "stream_weekday_sin": np.sin(2 * np.pi * weekday / 7),
            "stream_weekday_cos": np.cos(2 * np.pi * weekday / 7)}


def situation(events: pd.DataFrame) -> pd.DataFrame:
    """The stream's local hour and weekday as cyclic features (from the UTC time and its offset)."""
    local = events["event_timestamp"] + pd.to_timedelta(events["utc_offset_min"].astype("float64").fillna(0),
                                                        unit="min")
    hour = local.dt.hour.to_numpy() + local.dt.minute.to_numpy() / 60.0
    return pd.DataFrame(cyclic_time(hour, local.dt.weekday.to_numpy()), index=events.index)


def labelled(events: pd.DataFrame, contexts: Sequence[str]) -> pd.DataFrame:
    """Streams whose context the user gave, with the local hour and weekday as cyclic features."""
    ev = events[events["context"].isin(list(contexts))].reset_index(drop=True)
    keep = ["user_id", "track_id", "event_timestamp", "utc_offset_min", "device", "network", "age", "gender", "context"]
    out = ev[[c for c in keep if c in ev.columns]].copy()
    for c in ("age", "gender"):
        if c not in out:
            out[c] = None
    return pd.concat([out, situation(ev)], axis=1)


def user_feature_refs(store) -> list[str]:
    """Every feature of the user views, as Feast references (training and serving read the same)."""
    return [f"{view}:{f.name}" for view in USER_VIEWS for f in store.get_feature_view(view).features]


def with_features(store, streams: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """Streams + point-in-time user features (Feast) + track audio features; no row is lost."""
    refs = user_feature_refs(store)
    keys = streams[["user_id", "event_timestamp"]].drop_duplicates()
    users = historical(store, keys, refs)
    out = streams.merge(users, on=["user_id", "event_timestamp"], how="left")
    track_cols = tracks[["track_id", "context_probs", "audio_embedding"]].drop_duplicates("track_id")
    out = out.merge(track_cols, on="track_id", how="left")
    out["has_history"] = out["n_streams"].notna()
    out["has_audio"] = out["audio_embedding"].notna()
    return out
