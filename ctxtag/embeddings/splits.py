"""The evaluation splits of Chen et al. §3, plus the cold-start tracks they leave implicit.

* ``per_user``: the sub-dataset protocol — "the split was performed on each user's liked and
  disliked tracks, respectively", 60/20/20, so every user is in every split.
* ``by_user``: the big-dataset protocol — users are not shared across splits.
* cold-start tracks: new releases with no listening data. They are the audio tagger's test tracks
  (artist-disjoint, so unseen by every CNN here); their pairs are held out of both protocols and
  only used to measure recommendation of new tracks (AUC, hit rate @K).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from ctxtag.config import SplitConfig
from ctxtag.vocabulary import SPLITS


def _by_position(position: np.ndarray, ratios: SplitConfig) -> np.ndarray:
    """position in [0, 1) of a row within its group -> its split name."""
    edges = np.array([ratios.train, ratios.train + ratios.validation])
    return np.array(SPLITS, dtype=object)[np.searchsorted(edges, position, side="right")]


def per_user(inter: pd.DataFrame, ratios: SplitConfig, seed: int, cold_tracks: Collection[str] = ()) -> pd.Series:
    """Split name of each pair: 60/20/20 within each (user, liked) group; ``cold`` for new tracks."""
    rng = np.random.default_rng(seed)
    frame = inter[["user_id", "liked"]].assign(_key=rng.random(len(inter)))
    cold = inter["track_id"].isin(set(cold_tracks)).to_numpy()
    warm = frame[~cold].sort_values(["user_id", "liked", "_key"])
    groups = warm.groupby(["user_id", "liked"], sort=False)
    position = groups.cumcount().to_numpy() / groups["_key"].transform("size").to_numpy()
    out = pd.Series("cold", index=inter.index, dtype=object)
    out.loc[warm.index] = _by_position(position, ratios)
    return out


def by_user(inter: pd.DataFrame, ratios: SplitConfig, seed: int, cold_tracks: Collection[str] = ()) -> pd.Series:
    """Split name of each pair when whole users go to one split; ``cold`` for new tracks."""
    users = np.sort(inter["user_id"].unique())
    order = np.random.default_rng(seed).permutation(len(users))
    split_of = pd.Series(_by_position(np.argsort(order) / max(len(users), 1), ratios), index=users)
    out = inter["user_id"].map(split_of).astype(object)
    out[inter["track_id"].isin(set(cold_tracks)).to_numpy()] = "cold"
    return out
