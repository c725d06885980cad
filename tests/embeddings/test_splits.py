import numpy as np
import pandas as pd

from ctxtag.config import SplitConfig
from ctxtag.embeddings.splits import by_user, per_user

RATIOS = SplitConfig(0.6, 0.2, 0.2)


def _inter(n_users=12, per=20, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i}" for i in range(n_users)], per)
    tracks = np.concatenate([rng.choice(200, per, replace=False) for _ in range(n_users)]).astype(str)
    return pd.DataFrame({"user_id": users, "track_id": tracks, "liked": rng.integers(0, 2, len(users))})


def test_per_user_split_is_60_20_20_of_each_users_liked_and_disliked_tracks():
    inter = _inter()
    split = per_user(inter, RATIOS, seed=3)
    for (_, _), group in inter.assign(split=split).groupby(["user_id", "liked"]):
        n = len(group)
        counts = group["split"].value_counts()
        assert abs(counts.get("train", 0) - 0.6 * n) <= 1 and abs(counts.get("test", 0) - 0.2 * n) <= 1
    assert (per_user(inter, RATIOS, seed=3) == split).all()                 # seeded
    assert not (per_user(inter, RATIOS, seed=4) == split).all()


def test_new_tracks_are_held_out_of_both_protocols():
    inter = _inter()
    new = set(inter["track_id"].iloc[::7])
    for fn in (per_user, by_user):
        split = fn(inter, RATIOS, 0, new)
        assert (split[inter["track_id"].isin(new)] == "cold").all()
        assert (split[~inter["track_id"].isin(new)] != "cold").all()


def test_by_user_split_shares_no_user_across_splits():
    inter = _inter(n_users=30)
    split = by_user(inter, RATIOS, seed=1)
    per = inter.assign(split=split).groupby("user_id")["split"].nunique()
    assert (per == 1).all()
    users = inter.assign(split=split).drop_duplicates("user_id")["split"].value_counts()
    assert users["train"] == 18 and users["validation"] == 6 and users["test"] == 6
