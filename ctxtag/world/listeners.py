"""The generated listeners: users with preferred contexts, their time-zone-aware listening events
(device, network and time of day drawn from the context) and like / dislike / skip feedback.

Events are drawn in chunks of at most ``CHUNK`` (see :func:`chunk_sizes`), each as columns of
indices (:class:`EventBatch`), so a world of 100M events never holds more than one chunk and no
string is built before it is written (ctxtag.world.eventlog). Every step is vectorised; the only
loops run over contexts, time zones and columns. The first chunk draws from the world's generator
exactly as the one-frame version did, so the demo world is unchanged byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctxtag.config import SynthConfig
from ctxtag.vocabulary import DEVICES, NETWORKS
from ctxtag.world.profiles import (
    CONTEXT_PROFILES,
    CONTEXT_SITUATION,
    TIMEZONES,
    first_above,
    sigmoid,
)

# events drawn and written at a time: bounds the generator's memory (~0.5 GB at 2M), not n_events
CHUNK = 2_000_000
_NS = 1_000_000_000


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


def chunk_sizes(n_events: int, chunk: int | None = None) -> list[int]:
    """How many events each chunk draws: ``chunk`` (default the module's CHUNK) each, the rest last."""
    chunk = CHUNK if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    full, rest = divmod(max(0, int(n_events)), chunk)
    return [chunk] * full + ([rest] if rest or not full else [])


def _cdf(p: np.ndarray) -> np.ndarray:
    """The cumulative distribution numpy's ``Generator.choice(..., p=p)`` searches."""
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return cdf


class EventTables:
    """What every chunk draws from, computed once: the cumulative tables of the user, context and
    situation draws and, per context, the popularity-weighted tracks that fit it."""

    def __init__(self, cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
                 users: pd.DataFrame):
        self.cfg, self.contexts = cfg, list(contexts)
        act = users["activity"].to_numpy()
        self.user_cdf = _cdf(act / act.sum())
        self.pref_cum_t = np.ascontiguousarray(np.stack(users["_prefs"].to_numpy()).cumsum(axis=1).T)
        dev_w = np.array([CONTEXT_SITUATION[x][0] for x in contexts], dtype=float) + 0.3
        net_w = np.array([CONTEXT_SITUATION[x][1] for x in contexts], dtype=float)
        self.dev_cum_t = np.ascontiguousarray(np.cumsum(dev_w / dev_w.sum(1, keepdims=True), axis=1).T)
        self.net_cum_t = np.ascontiguousarray(np.cumsum(net_w / net_w.sum(1, keepdims=True), axis=1).T)
        self.peaks = np.array([CONTEXT_SITUATION[x][2] for x in contexts])
        # weekday: weekend-heavy contexts (party, club) draw Fri/Sat more often
        wk = np.array([CONTEXT_SITUATION[x][3] for x in contexts])
        day_w = np.ones((len(contexts), 7))
        day_w[:, 4:6] *= wk[:, None] * 1.6
        day_w[:, 6] *= np.sqrt(wk)
        self.day_cum_t = np.ascontiguousarray(np.cumsum(day_w / day_w.sum(1, keepdims=True), axis=1).T)
        # the track: popularity-weighted among tracks that truly fit the context; the cdf is kept
        # only where it rises (the tracks that fit), which finds the same track as the full one
        pop = tracks["popularity"].to_numpy()
        self.track_cdf = []
        for j in range(len(contexts)):
            w = pop * truth[:, j]
            fits = np.flatnonzero(w / w.sum() > 0)
            self.track_cdf.append((fits, _cdf(w / w.sum())[fits]))
        zones, self.user_zone = np.unique(users["timezone"].to_numpy().astype(str), return_inverse=True)
        self.zones = [str(z) for z in zones]
        self.start = pd.Timestamp(cfg.start_date)        # a Monday in the default params


@dataclass
class EventBatch:
    """One chunk of listening events as columns of indices, sorted by local time."""

    user: np.ndarray        # row in users
    track: np.ndarray       # row in tracks
    context: np.ndarray     # the true context (index into contexts)
    device: np.ndarray      # index into DEVICES
    network: np.ndarray     # index into NETWORKS
    located: np.ndarray     # the location is known
    labelled: np.ndarray    # the user named the context
    local: np.ndarray       # datetime64[ns]: the drawn local time (the sort key, the log file's day)
    wall: np.ndarray        # int64 s: the local wall-clock time written (nonexistent times shifted forward)
    offset: np.ndarray      # int64 s: UTC offset at that instant

    def __len__(self) -> int:
        return len(self.user)


def draw_events(tables: EventTables, rng: np.random.Generator, n_ev: int) -> EventBatch:
    """``n_ev`` listening events: context from the user's taste, then device, network, time from
    the context. Local times that are ambiguous (a DST fall-back) are dropped; nonexistent ones
    (spring-forward) are shifted forward."""
    t, cfg, m = tables, tables.cfg, len(tables.contexts)
    u = t.user_cdf.searchsorted(rng.random(n_ev), side="right")
    c = first_above(t.pref_cum_t, u, rng.random(n_ev))
    device = first_above(t.dev_cum_t, c, rng.random(n_ev))
    network = first_above(t.net_cum_t, c, rng.random(n_ev))
    peaks = t.peaks[c, rng.integers(0, 2, n_ev)]
    hour = np.mod(np.round(peaks + rng.normal(0, 1.3, n_ev)), 24).astype(np.int64)
    weekday = first_above(t.day_cum_t, c, rng.random(n_ev))
    week = rng.integers(0, max(1, cfg.days // 7), n_ev)
    day_offset = np.minimum(week * 7 + (weekday - t.start.weekday()) % 7, cfg.days - 1)
    minute = rng.integers(0, 60, n_ev)
    second = rng.integers(0, 60, n_ev)
    local = (t.start.value + (((day_offset * 24 + hour) * 60 + minute) * 60 + second) * _NS).view("M8[ns]")

    track = np.empty(n_ev, dtype=np.int64)
    for j in range(m):
        sel = np.nonzero(c == j)[0]
        fits, cdf = t.track_cdf[j]
        track[sel] = fits[cdf.searchsorted(rng.random(len(sel)), side="right")]

    zone = t.user_zone[u]
    wall = np.empty(n_ev, dtype=np.int64)
    utc = np.empty(n_ev, dtype=np.int64)
    for k, name in enumerate(t.zones):                       # vectorised per time zone
        sel = zone == k
        stamped = pd.DatetimeIndex(local[sel]).tz_localize(name, ambiguous="NaT", nonexistent="shift_forward")
        wall[sel] = stamped.tz_localize(None).asi8
        utc[sel] = stamped.asi8
    located = ~(rng.random(n_ev) < 0.5)                      # optional: often unknown
    labelled = rng.random(n_ev) < 0.35                      # the user chose a context
    keep = np.flatnonzero(wall != np.iinfo(np.int64).min)   # NaT: an ambiguous local time
    # the sort of the former one-frame version (DataFrame.sort_values on the datetime column is
    # numpy's default argsort of it), so that ties keep the order they had
    order = keep[np.argsort(local[keep], kind="quicksort")]
    if (wall[order] % _NS).any():
        raise AssertionError("local times are whole seconds")
    return EventBatch(user=u[order], track=track[order], context=c[order], device=device[order],
                      network=network[order], located=located[order], labelled=labelled[order],
                      local=local[order], wall=wall[order] // _NS, offset=(wall[order] - utc[order]) // _NS)


def events_frame(batch: EventBatch, contexts: Sequence[str], tracks: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """A batch as the frame the one-frame version returned (ids, text, ``_local``)."""
    from ctxtag.world.eventlog import timestamps

    location = np.array([CONTEXT_SITUATION[x][4] for x in contexts], dtype=object)[batch.context]
    location[~batch.located] = None
    return pd.DataFrame({
        "user_id": users["user_id"].to_numpy()[batch.user],
        "track_id": tracks["track_id"].to_numpy()[batch.track],
        "timestamp": timestamps(batch.wall, batch.offset).to_numpy(zero_copy_only=False),
        "device": np.array(DEVICES)[batch.device],
        "network": np.array(NETWORKS)[batch.network],
        "location": location,
        "age": users["age"].to_numpy()[batch.user],
        "gender": users["gender"].to_numpy()[batch.user],
        "context": np.where(batch.labelled, np.array(contexts)[batch.context], None),
        "true_context": np.array(contexts)[batch.context],
        "_local": batch.local,
    })


def events(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
           users: pd.DataFrame, rng: np.random.Generator, n_events: int | None = None) -> pd.DataFrame:
    """Listening events as one frame (``n_events``, default cfg.n_events; for small worlds)."""
    batch = draw_events(EventTables(cfg, contexts, tracks, truth, users), rng,
                        cfg.n_events if n_events is None else n_events)
    return events_frame(batch, contexts, tracks, users)


FEEDBACK = ("", "like", "skip", "dislike")     # codes of Feedback.draw (0: none)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hashed_normal(keys: np.ndarray, seed: int) -> np.ndarray:
    """A standard normal per integer key, fixed by (seed, key): the same key gets the same draw
    in every chunk, without a table of all the keys seen."""
    with np.errstate(over="ignore"):
        h1 = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([seed % 2**64], dtype=np.uint64))[0])
        h2 = _splitmix64(h1)
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53       # (0, 1)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class Feedback:
    """Per-event feedback (like / skip / dislike / none) from a per-user taste in the audio plane.

    A user's ideal point in (energy, valence) is the mix of the centres of the contexts they
    prefer, moved by noise and slightly by age; their opinion of a track falls with its distance
    from that point, plus a fixed per (user, track) noise, so repeated plays agree. Liked and
    disliked tracks therefore differ in how they sound (what Chen et al.'s audio branch learns)
    and a user's history and age tell where their taste lies (what the user branch learns).

    Its draws come from their own streams (``[seed, 6]`` for the taste and chunk 0, ``[seed, 6, i]``
    for chunk i), so adding feedback left every other draw of the world unchanged. The pair noise
    of chunk 0 is drawn as before; a pair first met in a later chunk gets a noise hashed from
    (seed, user, track), and a pair of chunk 0 met again keeps its chunk-0 noise: repeated plays
    agree across chunks too.
    """

    def __init__(self, tracks: pd.DataFrame, users: pd.DataFrame, contexts: Sequence[str], seed: int):
        self.seed, self.n_tracks = seed, len(tracks)
        self.rng = np.random.default_rng([seed, 6])
        centres = np.array([CONTEXT_PROFILES[c][:2] for c in contexts])
        prefs = np.stack(users["_prefs"].to_numpy())
        age = users["age"].to_numpy()
        ideal = prefs @ centres + self.rng.normal(0, 0.12, size=(len(users), 2))
        ideal[:, 0] -= np.nan_to_num((age - 40.0) * 0.004)           # older listeners: calmer taste
        self.ideal = np.clip(ideal, 0, 1)
        self.latent = tracks[["energy", "valence"]].to_numpy()
        self.taste = pd.DataFrame({"user_id": users["user_id"], "ideal_energy": self.ideal[:, 0],
                                   "ideal_valence": self.ideal[:, 1]})
        self._pairs: np.ndarray | None = None        # chunk 0's (user, track) keys, sorted, and their noise
        self._noise: np.ndarray | None = None

    def pair_noise(self, pair: np.ndarray) -> np.ndarray:
        """The fixed opinion noise of (user, track) keys ``user * n_tracks + track`` outside chunk
        0: the one chunk 0 drew for a pair it had, else one hashed from (seed, pair)."""
        pair = np.asarray(pair, dtype=np.int64)
        noise = 0.35 * hashed_normal(pair, self.seed)
        if self._pairs is not None and len(self._pairs):
            at = np.minimum(self._pairs.searchsorted(pair), len(self._pairs) - 1)
            seen = self._pairs[at] == pair
            noise[seen] = self._noise[at[seen]]
        return noise

    def draw(self, u: np.ndarray, t: np.ndarray, chunk: int = 0) -> np.ndarray:
        """Feedback codes (index into FEEDBACK) of the events (u, t) of chunk ``chunk``."""
        rng = self.rng if chunk == 0 else np.random.default_rng([self.seed, 6, chunk])
        d2 = ((self.latent[t] - self.ideal[u]) ** 2).sum(axis=1)
        pair, inverse = np.unique(u.astype(np.int64) * self.n_tracks + t, return_inverse=True)
        if chunk == 0:
            noise = rng.normal(0, 0.35, size=len(pair))
            self._pairs, self._noise = pair, noise
        else:
            noise = self.pair_noise(pair)
        opinion = 2 * np.exp(-d2 / (2 * 0.22**2)) - 1 + noise[inverse]
        r = rng.random(len(u))
        p_like = 0.6 * sigmoid(6 * (opinion + 0.1))
        p_skip = 0.6 * sigmoid(6 * (-opinion - 0.4))
        codes = np.zeros(len(u), dtype=np.int8)
        codes[r < p_like] = 1
        skipped = (r >= p_like) & (r < p_like + p_skip)
        codes[skipped] = np.where(rng.random(len(u)) < 0.1, 3, 2)[skipped]
        return codes
