"""Liked and disliked tracks per user, from the listening logs' ``feedback`` column (Chen et al. §3.1).

A (user, track) pair is *liked* or *disliked* by its feedback events: an explicit signal (``like``,
``dislike``) outweighs an implicit one (``skip`` inside the first 30 s), and among explicit
signals the latest wins, since people change their minds. A pair with skips and no explicit
signal is disliked; one played without any feedback is neither (it stays listening history).
Users need at least ``min_liked`` liked and ``min_disliked`` disliked tracks (the paper's 10 / 10).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPLICIT = {"like": 1, "dislike": 0}


def interactions(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, track) with feedback: ``liked`` (1 / 0) and ``first_ts`` (first feedback)."""
    cols = ["user_id", "track_id", "liked", "first_ts"]
    if "feedback" not in events:
        return pd.DataFrame(columns=cols)
    ev = events.loc[events["feedback"].notna(), ["user_id", "track_id", "event_timestamp", "feedback"]]
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = ev.sort_values("event_timestamp", kind="stable")
    keys = ["user_id", "track_id"]
    first = ev.groupby(keys, sort=False)["event_timestamp"].min().rename("first_ts")
    explicit = ev[ev["feedback"].isin(list(EXPLICIT))]
    latest = explicit.groupby(keys, sort=False)["feedback"].last().map(EXPLICIT).rename("explicit")
    out = first.to_frame().join(latest)
    # skips only: disliked
    out["liked"] = out["explicit"].fillna(0).astype(np.int8)
    return out.reset_index()[cols].sort_values(keys).reset_index(drop=True)


def eligible(inter: pd.DataFrame, min_liked: int, min_disliked: int) -> pd.DataFrame:
    """The pairs of users with enough of both kinds (the paper's sub-dataset rule)."""
    counts = inter.groupby("user_id")["liked"].agg(["sum", "count"])
    ok = counts.index[(counts["sum"] >= min_liked) & (counts["count"] - counts["sum"] >= min_disliked)]
    return inter[inter["user_id"].isin(ok)].reset_index(drop=True)


def listening_history(events: pd.DataFrame) -> pd.DataFrame:
    """The plays a user's taste is read from: every event not skipped or disliked."""
    fb = events["feedback"] if "feedback" in events else pd.Series(None, index=events.index)
    return events.loc[~fb.isin(["skip", "dislike"]), ["user_id", "track_id", "event_timestamp"]]
