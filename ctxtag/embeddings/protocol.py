"""An evaluation protocol of Chen et al. (per-user split or users not shared): the user branch
trained on what the protocol may see, its UEs, and the liked / disliked pairs of each split.

Anti-leak rule: the user branch never sees a held-out pair's plays, nor any play of a new track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ctxtag.config import Params
from ctxtag.embeddings.data import Histories, Ragged, Vocab, epoch_seconds
from ctxtag.embeddings.evaluation import hit_rate, liked_vs_disliked, youden_threshold
from ctxtag.embeddings.model import SiameseRecommender, UserBranch
from ctxtag.embeddings.train import (
    Examples,
    Pairs,
    fit_user_branch,
    scores,
    track_embeddings,
    user_embeddings,
)
from ctxtag.vocabulary import SPLITS

PAIR_SPLITS = (*SPLITS, "cold")     # cold: pairs of the new tracks


@dataclass
class Protocol:
    name: str
    users: pd.Index
    vocab: Vocab
    user_branch: UserBranch
    user_history: list[dict]
    anchors: np.ndarray                      # UE per user (n_users, dim)
    pairs: dict[str, Pairs]                  # train / validation / test / cold


def _pair_key(frame: pd.DataFrame) -> pd.Series:
    return frame["user_id"].astype(str) + "\x1f" + frame["track_id"].astype(str)


def visible_plays(plays: pd.DataFrame, held: pd.DataFrame, new_tracks: set[str]) -> pd.DataFrame:
    """The plays a protocol's user branch may learn from (the anti-leak rule)."""
    return plays[~plays["track_id"].isin(new_tracks) & ~_pair_key(plays).isin(set(_pair_key(held)))]


def build_protocol(name: str, split_of: pd.Series, inter: pd.DataFrame, plays: pd.DataFrame, new_tracks: set[str],
                   users: pd.Index, demo: np.ndarray, catalogue: pd.DataFrame, mel_row: np.ndarray,
                   params: Params, device: torch.device) -> Protocol:
    """Train the user branch on what this protocol may see, and index its pairs."""
    cfg = params.embeddings
    visible = visible_plays(plays, inter[split_of != "train"], new_tracks)
    train_mask = (split_of == "train").to_numpy()
    vocab = Vocab.build(pd.concat([visible["track_id"], inter.loc[train_mask, "track_id"]]).unique(), catalogue)
    hist = Histories(visible, users, vocab, cfg.history_len)
    u = users.get_indexer(inter["user_id"])
    t = vocab.track_index(inter["track_id"])
    until = epoch_seconds(inter["first_ts"])
    liked = inter["liked"].to_numpy().astype(np.int8)
    split = split_of.to_numpy()
    train_ex = Examples.build(hist, u[train_mask & (liked == 1)], t[train_mask & (liked == 1)],
                              until[train_mask & (liked == 1)])
    val_mask = (split == "validation") & (liked == 1)
    val_ex = Examples.build(hist, u[val_mask], t[val_mask], until[val_mask])
    neg = train_mask & (liked == 0) & (t > 0)
    disliked = Ragged(u[neg], t[neg], len(users))
    sizes = (len(vocab.tracks), len(vocab.albums), len(vocab.artists))
    model, history = fit_user_branch(train_ex, val_ex, disliked, sizes, demo, cfg, params.seed, device)
    anchors = user_embeddings(model, hist, demo, device)
    pairs = {s: Pairs(u[split == s], mel_row[split == s], liked[split == s]) for s in PAIR_SPLITS}
    return Protocol(name, users, vocab, model, history, anchors, pairs)


def evaluate_model(model: SiameseRecommender, proto: Protocol, mels: np.ndarray, frames: int, new_rows: np.ndarray,
                   ks, device: torch.device, n_segments: int, test_users: np.ndarray | None = None) -> dict:
    """Liked vs disliked on test and new-track pairs (threshold from validation), hit rate @K of
    the new tracks for users with a liked one (``test_users``: only those)."""
    p = proto.pairs
    rows = np.unique(np.concatenate([p["validation"].row, p["test"].row, p["cold"].row, new_rows]))
    ae = track_embeddings(model.cnn, mels, rows, frames, device, n_segments)
    at = np.full(mels.shape[0], -1)
    at[rows] = np.arange(len(rows))
    anchors = model.users(torch.arange(len(proto.users), device=device)).detach().cpu().numpy()
    out: dict = {}
    s = {k: scores(anchors, ae, p[k], at) for k in ("validation", "test", "cold")}
    thr = youden_threshold(p["validation"].liked, s["validation"])
    for k in ("test", "cold"):
        out[k] = liked_vs_disliked(p[k].liked, s[k], p[k].user, thr)
    cold = p["cold"].subset(p["cold"].liked == 1)
    liked = np.zeros((len(proto.users), len(new_rows)), dtype=bool)
    col = pd.Index(new_rows).get_indexer(cold.row)
    liked[cold.user[col >= 0], col[col >= 0]] = True
    if test_users is not None:
        liked[~np.isin(np.arange(len(proto.users)), test_users)] = False
    out["hit_rate"] = hit_rate(anchors, ae[at[new_rows]], liked, ks)
    out["_scores"] = {k: s[k] for k in ("test",)}
    return out
