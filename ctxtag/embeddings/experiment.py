"""Chen et al. end to end, in memory: the liked / disliked pairs of eligible users, both protocols,
every model x context duration of Table 1, the serving tables (AE of every track, UE of every
user) and the transfer study. `ctxtag.stages.embeddings` reads the inputs and writes the outputs.

1. Liked and disliked pairs of eligible users (>= 10 of each); the tagger's artist-disjoint test
   tracks are the new releases (no listening data is used for them anywhere).
2. Per protocol (``per_user``: the sub-dataset's per-user 60/20/20; ``by_user``: the big dataset's
   disjoint users): the user branch is trained on the visible plays and gives every user's UE.
3. Table 1: each model x context duration on ``per_user``; the paper's chosen model (best_model,
   best_duration) again on ``by_user``. AUC and precision on the test and new-track pairs; hit rate
   @K of new tracks retrieved by cosine similarity.
4. The chosen model embeds every catalogue track (AE), the serving user branch every user (UE).
5. Transfer: AE vs the CNN tagger's embedding as features of a context SVM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ctxtag.audio.mel_set import MelSet
from ctxtag.common.progress import progress
from ctxtag.config import Params
from ctxtag.embeddings import transfer
from ctxtag.embeddings.artifacts import frames
from ctxtag.embeddings.data import Histories, demographics
from ctxtag.embeddings.feedback import eligible, interactions, listening_history
from ctxtag.embeddings.model import SiameseRecommender
from ctxtag.embeddings.protocol import Protocol, build_protocol, evaluate_model
from ctxtag.embeddings.splits import by_user, per_user
from ctxtag.embeddings.train import fit_audio, track_embeddings, user_embeddings


@dataclass
class Experiment:
    inter: pd.DataFrame                      # the eligible users' liked / disliked pairs
    plays: pd.DataFrame                      # every user's listening history (ctxtag.embeddings.feedback)
    users: pd.Index
    new_rows: np.ndarray                     # mel rows of the new releases
    protocols: dict[str, Protocol]
    results: dict = field(default_factory=lambda: {"per_user": {}, "by_user": {}})   # protocol -> duration -> model
    runs: list[dict] = field(default_factory=list)            # one per trained model, for MLflow
    trained: dict = field(default_factory=dict)               # (protocol, model, duration) -> SiameseRecommender


def run_experiment(events: pd.DataFrame, catalogue: pd.DataFrame, tagger_split: pd.Series, mels: MelSet,
                   params: Params, device: torch.device, echo: Callable[[str, dict], None] | None = None,
                   on_model: Callable[[SiameseRecommender, str, float, list[dict]], None] | None = None) -> Experiment:
    """Steps 1-3; ``on_model(model, name, duration, history)`` sees each per-user model once trained."""
    cfg, row_of = params.embeddings, mels.row_of
    new_tracks = set(tagger_split.index[tagger_split == "test"])
    inter = eligible(interactions(events), cfg.min_liked, cfg.min_disliked)
    inter = inter[inter["track_id"].isin(row_of.index)].reset_index(drop=True)
    if inter.empty:
        raise ValueError(f"no user has {cfg.min_liked} liked and {cfg.min_disliked} disliked tracks with audio; "
                         "the listening logs need a feedback column (like / dislike / skip)")
    mel_row = row_of.reindex(inter["track_id"]).to_numpy()
    users = pd.Index(sorted(inter["user_id"].unique()))
    demo = demographics(events, users, params.logs.genders)
    plays = listening_history(events)
    new_rows = np.sort(row_of.reindex(sorted(new_tracks)).dropna().astype(int).to_numpy())

    splits = {"per_user": per_user(inter, cfg.split, params.seed, new_tracks),
              "by_user": by_user(inter, cfg.split, params.seed, new_tracks)}
    built = {name: build_protocol(name, split, inter, plays, new_tracks, users, demo, catalogue, mel_row, params,
                                  device) for name, split in progress(splits.items(), total=2,
                                                                      description="user branches")}
    exp = Experiment(inter, plays, users, new_rows, built)
    jobs = [("per_user", m, d) for d in cfg.durations for m in cfg.models] + \
           [("by_user", cfg.best_model, cfg.best_duration)]
    for proto_name, model_name, duration in progress(jobs, total=len(jobs), description="audio branches"):
        proto, n_frames = built[proto_name], frames(duration, params.embedding_audio)
        tag = f"{proto_name} {model_name} {duration:g}s"
        model, history = fit_audio(model_name, n_frames, mels.mels, proto.pairs["train"], proto.pairs["validation"],
                                   len(users), proto.anchors, cfg, params.seed, device,
                                   None if echo is None else (lambda row, tag=tag: echo(tag, row)))
        test_users = np.unique(proto.pairs["test"].user) if proto_name == "by_user" else None
        result = evaluate_model(model, proto, mels.mels, n_frames, new_rows, cfg.hit_k, device, cfg.eval_segments,
                                test_users)
        exp.results[proto_name].setdefault(duration, {})[model_name] = result
        exp.runs.append({"protocol": proto_name, "model": model_name, "duration": duration, "result": result,
                         "history": history})
        if on_model is not None:
            on_model(model, model_name, duration, history)
        exp.trained[(proto_name, model_name, duration)] = model
    return exp


def serving_tables(exp: Experiment, events: pd.DataFrame, mels: MelSet, params: Params,
                   device: torch.device) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Step 4: (AE of every track, UE of every user, the AE matrix in mel-row order)."""
    cfg = params.embeddings
    best = exp.trained[("per_user", cfg.best_model, cfg.best_duration)]
    serving = exp.protocols["per_user"]
    track_ids = mels.track_ids
    ae_all = track_embeddings(best.cnn, mels.mels, np.arange(len(track_ids)),
                              frames(cfg.best_duration, params.embedding_audio), device, cfg.eval_segments)
    cutoff = events["event_timestamp"].max()
    all_users = pd.Index(sorted(events["user_id"].unique()))
    ue_all = user_embeddings(serving.user_branch, Histories(exp.plays, all_users, serving.vocab, cfg.history_len),
                             demographics(events, all_users, params.logs.genders), device)
    tag = f"{cfg.best_model}_{cfg.best_duration:g}s"
    tracks = pd.DataFrame({"track_id": track_ids, "listening_embedding": list(ae_all.astype(np.float32)),
                           "cold_start": ~pd.Index(track_ids).isin(serving.vocab.tracks), "embedding_model": tag,
                           "event_timestamp": cutoff})
    users = pd.DataFrame({"user_id": all_users, "listening_embedding": list(ue_all.astype(np.float32)),
                          "event_timestamp": cutoff})
    return tracks, users, ae_all


def transfer_study(ids: np.ndarray, y: np.ndarray, track_features: pd.DataFrame, ae_all: np.ndarray, mels: MelSet,
                   tagger_split: pd.Series, params: Params) -> dict:
    """Step 5: AE vs the tagger's embedding as features of a context SVM, on the tagger's split."""
    row_of = mels.row_of
    tf = track_features.set_index(track_features["track_id"].astype(str))
    keep = pd.Index(ids).isin(tf.index) & pd.Index(ids).isin(row_of.index) & pd.Index(ids).isin(tagger_split.index)
    ids, y = np.asarray(ids)[keep], y[keep]
    cnn_feat = np.stack(tf.loc[ids, "audio_embedding"].to_numpy()).astype(np.float32)
    ae_feat = ae_all[row_of.reindex(ids).to_numpy()]
    where = tagger_split.reindex(ids).to_numpy()
    return transfer.evaluate({"cnn": cnn_feat, "ae": ae_feat, "cnn+ae": np.hstack([cnn_feat, ae_feat])},
                             y, where == "train", where == "test", params.contexts, params.embeddings.transfer_pca,
                             params.seed)
