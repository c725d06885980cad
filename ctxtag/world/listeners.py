"""The generated listeners: users with preferred contexts, their time-zone-aware listening events
(device, network and time of day drawn from the context) and like / dislike / skip feedback."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctxtag.config import SynthConfig
from ctxtag.vocabulary import DEVICES, NETWORKS
from ctxtag.world.profiles import CONTEXT_PROFILES, CONTEXT_SITUATION, TIMEZONES, sigmoid


def users(cfg: SynthConfig, contexts: Sequence[str], rng: np.random.Generator) -> pd.DataFrame:
    m = len(contexts)
    prefs = rng.dirichlet(np.full(m, 0.35), size=cfg.n_users)
    age = rng.integers(16, 70, size=cfg.n_users).astype(float)
    age[rng.random(cfg.n_users) < 0.15] = np.nan                 # optional, often missing
    gender = rng.choice(np.array(["f", "m", "x"]), size=cfg.n_users, p=[0.48, 0.48, 0.04]).astype(object)
    gender[rng.random(cfg.n_users) < 0.2] = None
    return pd.DataFrame({
        "user_id": [f"u{i:05d}" for i in range(cfg.n_users)],
        "age": age, "gender": gender,
        "timezone": rng.choice(np.array(TIMEZONES), size=cfg.n_users),
        "activity": rng.lognormal(0, 0.8, size=cfg.n_users),
        "_prefs": list(prefs),
    })


def events(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
            users: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Listening events: context from the user's taste, then device, network, time from the context."""
    n_ev, m = cfg.n_events, len(contexts)
    act = users["activity"].to_numpy()
    u = rng.choice(len(users), size=n_ev, p=act / act.sum())
    prefs = np.stack(users["_prefs"].to_numpy())[u]
    c = (prefs.cumsum(axis=1) > rng.random((n_ev, 1))).argmax(axis=1)

    dev_w = np.array([CONTEXT_SITUATION[x][0] for x in contexts], dtype=float) + 0.3
    net_w = np.array([CONTEXT_SITUATION[x][1] for x in contexts], dtype=float)
    device = (np.cumsum(dev_w / dev_w.sum(1, keepdims=True), axis=1)[c] > rng.random((n_ev, 1))).argmax(1)
    network = (np.cumsum(net_w / net_w.sum(1, keepdims=True), axis=1)[c] > rng.random((n_ev, 1))).argmax(1)
    peaks = np.array([CONTEXT_SITUATION[x][2] for x in contexts])[c, rng.integers(0, 2, n_ev)]
    hour = np.mod(np.round(peaks + rng.normal(0, 1.3, n_ev)), 24).astype(int)
    # weekday: weekend-heavy contexts (party, club) draw Fri/Sat more often
    wk = np.array([CONTEXT_SITUATION[x][3] for x in contexts])[c]
    day_w = np.ones((n_ev, 7))
    day_w[:, 4:6] *= wk[:, None] * 1.6
    day_w[:, 6] *= np.sqrt(wk)
    weekday = (np.cumsum(day_w / day_w.sum(1, keepdims=True), axis=1) > rng.random((n_ev, 1))).argmax(1)
    start = pd.Timestamp(cfg.start_date)                        # a Monday in the default params
    week = rng.integers(0, max(1, cfg.days // 7), n_ev)
    day_offset = np.minimum(week * 7 + (weekday - start.weekday()) % 7, cfg.days - 1)
    minute = rng.integers(0, 60, n_ev)
    second = rng.integers(0, 60, n_ev)
    local = start + pd.to_timedelta(day_offset, "D") + pd.to_timedelta(hour, "h") \
        + pd.to_timedelta(minute, "min") + pd.to_timedelta(second, "s")

    # the track: popularity-weighted among tracks that truly fit the context
    pop = tracks["popularity"].to_numpy()
    track_idx = np.empty(n_ev, dtype=np.int64)
    for j in range(m):
        sel = np.nonzero(c == j)[0]
        w = pop * truth[:, j]
        track_idx[sel] = rng.choice(len(pop), size=len(sel), p=w / w.sum())

    tz = users["timezone"].to_numpy()[u]
    stamps = np.empty(n_ev, dtype=object)
    for zone in np.unique(tz):                                  # vectorised per time zone
        sel = tz == zone
        stamps[sel] = pd.DatetimeIndex(local[sel]).tz_localize(zone, ambiguous="NaT",
                                                                nonexistent="shift_forward").map(
            lambda ts: ts.isoformat() if ts is not pd.NaT else None)
    location = np.array([CONTEXT_SITUATION[x][4] for x in contexts], dtype=object)[c]
    location[rng.random(n_ev) < 0.5] = None                    # optional: often unknown
    labelled = rng.random(n_ev) < 0.35                          # the user chose a context
    ev = pd.DataFrame({
        "user_id": users["user_id"].to_numpy()[u],
        "track_id": tracks["track_id"].to_numpy()[track_idx],
        "timestamp": stamps,
        "device": np.array(DEVICES)[device],
        "network": np.array(NETWORKS)[network],
        "location": location,
        "age": users["age"].to_numpy()[u],
        "gender": users["gender"].to_numpy()[u],
        "context": np.where(labelled, np.array(contexts)[c], None),
        "true_context": np.array(contexts)[c],
        "_local": local,
    })
    ev = ev.dropna(subset=["timestamp"]).sort_values("_local").reset_index(drop=True)
    return ev


def feedback(tracks: pd.DataFrame, users: pd.DataFrame, events: pd.DataFrame, contexts: Sequence[str],
              rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-event feedback (like / skip / dislike / none) from a per-user taste in the audio plane.

    A user's ideal point in (energy, valence) is the mix of the centres of the contexts they
    prefer, moved by noise and slightly by age; their opinion of a track falls with its distance
    from that point, plus a fixed per (user, track) noise, so repeated plays agree. Liked and
    disliked tracks therefore differ in how they sound (what Chen et al.'s audio branch learns)
    and a user's history and age tell where their taste lies (what the user branch learns).
    """
    centres = np.array([CONTEXT_PROFILES[c][:2] for c in contexts])
    prefs = np.stack(users["_prefs"].to_numpy())
    age = users["age"].to_numpy()
    ideal = prefs @ centres + rng.normal(0, 0.12, size=(len(users), 2))
    ideal[:, 0] -= np.nan_to_num((age - 40.0) * 0.004)           # older listeners: calmer taste
    ideal = np.clip(ideal, 0, 1)
    u = pd.Index(users["user_id"]).get_indexer(events["user_id"])
    t = pd.Index(tracks["track_id"]).get_indexer(events["track_id"])
    latent = tracks[["energy", "valence"]].to_numpy()
    d2 = ((latent[t] - ideal[u]) ** 2).sum(axis=1)
    pair, inverse = np.unique(u.astype(np.int64) * len(tracks) + t, return_inverse=True)
    opinion = 2 * np.exp(-d2 / (2 * 0.22**2)) - 1 + rng.normal(0, 0.35, size=len(pair))[inverse]
    r = rng.random(len(events))
    p_like = 0.6 * sigmoid(6 * (opinion + 0.1))
    p_skip = 0.6 * sigmoid(6 * (-opinion - 0.4))
    feedback = np.full(len(events), None, dtype=object)
    feedback[r < p_like] = "like"
    skipped = (r >= p_like) & (r < p_like + p_skip)
    feedback[skipped] = np.where(rng.random(len(events)) < 0.1, "dislike", "skip")[skipped]
    taste = pd.DataFrame({"user_id": users["user_id"], "ideal_energy": ideal[:, 0], "ideal_valence": ideal[:, 1]})
    return feedback, taste
