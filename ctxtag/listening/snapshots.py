"""User features from the listening-log lake, as daily point-in-time snapshots for Feast.

A snapshot stamped D+1 00:00 UTC aggregates every event *before* that instant, so a training row
at time t joins (Feast's point-in-time join: latest snapshot <= t) only history it could have
known. Everything is vectorised: one-hot matrices summed per (user, day), then cumulated per user.

- history: streams, and per context the count and share of streams whose track carries the
  context (observed track labels; an event's own context label counts too), top 3 artists, and
  the history embedding (ctxtag.listening.history_embedding: SVD fold-in of the listening shares).
- device/time profile: device and network shares, local hour-of-day (24) and weekday (7)
  distributions, and circular means of hour and weekday as sin/cos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctxtag.listening.history_embedding import event_rows


def _one_hot(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    codes = pd.Categorical(values, categories=list(categories)).codes
    out = np.zeros((len(values), len(categories)), dtype=np.float64)
    ok = codes >= 0
    out[np.nonzero(ok)[0], codes[ok]] = 1.0
    return out


def daily_snapshots(events: pd.DataFrame, track_labels: pd.DataFrame, track_artists: pd.Series,
                    contexts: Sequence[str], devices: Sequence[str], networks: Sequence[str],
                    item_projection: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, device_time) frames keyed by user_id and event_timestamp (snapshot time)."""
    ev = events.reset_index(drop=True)
    day = ev["event_timestamp"].dt.floor("D")
    snap = day + pd.Timedelta(days=1)
    local = ev["event_timestamp"] + pd.to_timedelta(ev["utc_offset_min"].astype("float64").fillna(0), unit="min")
    hour, weekday = local.dt.hour.to_numpy(), local.dt.weekday.to_numpy()

    labels = track_labels.reindex(ev["track_id"]).fillna(0).to_numpy(dtype=np.float64)
    labels = np.maximum(labels, _one_hot(ev["context"], contexts))          # an explicit label counts
    blocks = {
        "ctx": labels,
        "dev": _one_hot(ev["device"], devices),
        "net": _one_hot(ev["network"], networks),
        "hour": np.eye(24)[hour],
        "wday": np.eye(7)[weekday],
        "cyc": np.stack([np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                         np.sin(2 * np.pi * weekday / 7), np.cos(2 * np.pi * weekday / 7)], axis=1),
        "emb": event_rows(ev["track_id"], item_projection),
    }
    names = {k: [f"{k}{i}" for i in range(v.shape[1])] for k, v in blocks.items()}
    frame = pd.DataFrame(np.hstack(list(blocks.values())), columns=sum(names.values(), []))
    frame["n"] = 1.0
    frame["user_id"], frame["event_timestamp"] = ev["user_id"].to_numpy(), snap.to_numpy()
    daily = frame.groupby(["user_id", "event_timestamp"], sort=True).sum()
    cum = daily.groupby(level="user_id").cumsum()
    n = cum["n"].to_numpy()[:, None]
    key = cum.index.to_frame(index=False)
    key["event_timestamp"] = pd.to_datetime(key["event_timestamp"], utc=True)

    history = key.copy()
    history["n_streams"] = cum["n"].to_numpy().astype(np.int64)
    counts = cum[names["ctx"]].to_numpy()
    for j, c in enumerate(contexts):
        history[f"ctx_count_{c}"] = counts[:, j].astype(np.int64)
        history[f"ctx_share_{c}"] = (counts[:, j] / n[:, 0]).astype(np.float32)
    history["top_artists"] = _top_artists(ev.assign(snap=snap.to_numpy()), track_artists, key)
    history["history_embedding"] = list((cum[names["emb"]].to_numpy() / n).astype(np.float32))

    device_time = key.copy()
    for k, cats in (("dev", devices), ("net", networks)):
        shares = cum[names[k]].to_numpy() / n
        for j, c in enumerate(cats):
            device_time[f"{'device' if k == 'dev' else 'network'}_share_{c}"] = shares[:, j].astype(np.float32)
    device_time["hour_dist"] = list((cum[names["hour"]].to_numpy() / n).astype(np.float32))
    device_time["weekday_dist"] = list((cum[names["wday"]].to_numpy() / n).astype(np.float32))
    cyc = cum[names["cyc"]].to_numpy() / n
    for j, name in enumerate(("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")):
        device_time[name] = cyc[:, j].astype(np.float32)
    return history, device_time


def _top_artists(ev: pd.DataFrame, track_artists: pd.Series, key: pd.DataFrame, k: int = 3) -> list[list[str]]:
    """The k most-streamed artists of each user up to each snapshot."""
    ev = ev.assign(artist=track_artists.reindex(ev["track_id"]).to_numpy()).dropna(subset=["artist"])
    daily = ev.groupby(["user_id", "artist", "snap"]).size().rename("n").reset_index()
    daily["snap"] = pd.to_datetime(daily["snap"], utc=True)
    # for every snapshot of a user, the cumulative count of each artist streamed by then
    grid = key.merge(daily[["user_id", "artist"]].drop_duplicates(), on="user_id")
    grid = grid.merge(daily, how="left", left_on=["user_id", "artist", "event_timestamp"],
                      right_on=["user_id", "artist", "snap"]).drop(columns="snap")
    grid["n"] = grid["n"].fillna(0)
    grid = grid.sort_values(["user_id", "artist", "event_timestamp"])
    grid["cum"] = grid.groupby(["user_id", "artist"])["n"].cumsum()
    grid = grid[grid["cum"] > 0].sort_values(["user_id", "event_timestamp", "cum", "artist"],
                                             ascending=[True, True, False, True])
    top = grid.groupby(["user_id", "event_timestamp"])["artist"].agg(lambda a: list(a[:k]))
    return [top.get((u, t), []) for u, t in zip(key["user_id"], key["event_timestamp"], strict=True)]
