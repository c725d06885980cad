"""`ctxtag synth`: a seeded, realistic small world for the embedded demo and the tests.

Tracks have a latent (energy, valence); each context has an affinity to a region of that plane
(or, for car / work / night, hardly any), which gives every track its complete *true* contexts
and the audible traits of its clip. Users prefer some contexts; they build playlists named after
a context (in many spellings, with noise titles among them) from popularity-skewed tracks that
truly fit it, so rare tracks miss labels exactly as real playlist data does. Listening events
pick device, network and time of day from the context. The true labels are written apart under
``truth/`` so later stages can be scored against what real data never has.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.progress import progress
from ctxtag.config import SynthConfig
from ctxtag.vocabulary import DEVICES, NETWORKS
from ctxtag.world.synth_audio import render, traits_from_latent

# (energy, valence) centre and strength of each context's link to the audio; strength ~0:
# the context is situational (the paper finds car, work, night hardest to predict from audio).
CONTEXT_PROFILES: dict[str, tuple[float, float, float]] = {
    "car": (0.6, 0.6, 0.3), "chill": (0.35, 0.55, 1.5), "club": (0.88, 0.55, 4.0),
    "dance": (0.8, 0.72, 4.0), "gym": (0.92, 0.45, 3.5), "happy": (0.62, 0.92, 3.0),
    "night": (0.55, 0.3, 1.0), "party": (0.8, 0.8, 3.5), "relax": (0.2, 0.55, 3.5),
    "running": (0.85, 0.62, 3.0), "sad": (0.22, 0.08, 4.0), "sleep": (0.08, 0.4, 4.0),
    "summer": (0.68, 0.82, 2.5), "work": (0.45, 0.5, 0.3), "workout": (0.9, 0.55, 3.5),
}
# share of all context playlists that name each context (the catalogue is imbalanced)
CONTEXT_POPULARITY = {
    "dance": 3.0, "party": 2.2, "chill": 2.2, "summer": 1.4, "gym": 1.2, "running": 1.0,
    "workout": 1.0, "sad": 1.0, "car": 0.9, "relax": 0.8, "work": 0.7, "night": 0.6,
    "happy": 0.6, "sleep": 0.5, "club": 0.4,
}
# per context: device weights, network weights, hour-of-day peaks, weekend multiplier, location
CONTEXT_SITUATION: dict[str, tuple[Sequence[float], Sequence[float], Sequence[int], float, str]] = {
    "car":     ((1, 0, 0, 0, 12, 0), (1, 6, 1), (8, 18), 1.0, "car"),
    "chill":   ((3, 2, 1, 2, 0, 1), (5, 2, 1), (16, 21), 1.2, "home"),
    "club":    ((4, 0, 0, 2, 0, 0), (1, 4, 1), (23, 1), 3.0, "outdoor"),
    "dance":   ((3, 1, 0, 4, 0, 1), (4, 2, 1), (20, 23), 2.0, "home"),
    "gym":     ((10, 0, 1, 1, 0, 0), (2, 6, 2), (7, 18), 0.8, "gym"),
    "happy":   ((3, 2, 1, 2, 1, 1), (4, 3, 1), (10, 17), 1.3, "home"),
    "night":   ((4, 2, 1, 2, 1, 1), (4, 2, 1), (23, 2), 1.5, "home"),
    "party":   ((2, 1, 0, 8, 0, 1), (5, 2, 1), (22, 0), 3.0, "home"),
    "relax":   ((2, 2, 2, 3, 0, 2), (6, 1, 1), (19, 21), 1.3, "home"),
    "running": ((12, 0, 0, 0, 0, 0), (1, 6, 3), (7, 19), 1.2, "outdoor"),
    "sad":     ((5, 2, 2, 1, 0, 0), (5, 3, 1), (22, 2), 1.0, "home"),
    "sleep":   ((6, 0, 2, 4, 0, 0), (7, 1, 2), (23, 0), 1.0, "home"),
    "summer":  ((5, 1, 1, 3, 2, 0), (2, 5, 1), (14, 17), 1.5, "outdoor"),
    "work":    ((1, 12, 1, 0, 0, 0), (8, 1, 1), (10, 15), 0.1, "office"),
    "workout": ((10, 0, 1, 2, 0, 0), (3, 5, 2), (7, 18), 0.8, "gym"),
}
# how playlist creators spell a context in a title; {k} is the keyword in its form
TITLE_TEMPLATES = (
    "{k}", "{K}", "{Kc}", "#{Kc}!!", "{k} mix", "{Kc} Vibes", "my {k} playlist", "{Kc} Hits 2026",
    "{k} songs", "música para {k}", "{K} TIME", "best of {k}", "{Kc} 🎧", "{k}, {k2}",
    "{Kc} & {K2c}", "{k} ({year})", "pour le {k}", "{Kc}!!!", "~{k}~", "{k}_{k2}",
)
NOISE_TITLES = (
    "homework", "my favs", "rock classics", "indie finds", "throwback", "carpool karaoke",
    "chillout lounge", "partytime", "sadness", "clubbing 2019", "workouts", "Discover", "on repeat",
    "road trip", "summertime", "dancefloor", "workaholic", "nightcore", "Happiness", "sleepover",
    "gymnopédies", "rélaxation", "cardio", "coding", "Sunday morning", "love songs",
)
TIMEZONES = ("Europe/Paris", "Europe/Berlin", "America/Sao_Paulo", "Europe/London", "America/New_York")


@dataclass
class World:
    """The generated world, as written to ``raw``."""

    tracks: pd.DataFrame
    true_labels: pd.DataFrame
    users: pd.DataFrame
    playlists: list[dict]
    events: pd.DataFrame


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def true_context_probability(energy: np.ndarray, valence: np.ndarray, contexts: Sequence[str]) -> np.ndarray:
    """P(context fits the track | latent traits), (n_tracks, m)."""
    prof = np.array([CONTEXT_PROFILES[c] for c in contexts])
    d2 = (energy[:, None] - prof[None, :, 0]) ** 2 + (valence[:, None] - prof[None, :, 1]) ** 2
    affinity = np.exp(-d2 / (2 * 0.2**2))
    strength = prof[None, :, 2]
    # weak contexts fit ~30 % of tracks whatever they sound like
    return _sigmoid(-0.85 + strength * (2 * affinity - 0.7))


def _catalogue(cfg: SynthConfig, contexts: Sequence[str], rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    artist_centre = rng.uniform(0.05, 0.95, size=(cfg.n_artists, 2))
    rows = []
    album_no = 0
    for a in range(cfg.n_artists):
        for _ in range(rng.integers(cfg.albums_per_artist[0], cfg.albums_per_artist[1] + 1)):
            album_no += 1
            for _ in range(rng.integers(cfg.tracks_per_album[0], cfg.tracks_per_album[1] + 1)):
                rows.append((a, album_no))
    artist, album = np.array(rows).T
    n = len(artist)
    latent = np.clip(artist_centre[artist] + rng.normal(0, 0.12, size=(n, 2)), 0, 1)
    p = true_context_probability(latent[:, 0], latent[:, 1], contexts)
    truth = (rng.random(p.shape) < p).astype(np.uint8)
    empty = truth.sum(axis=1) == 0                      # every track fits somewhere
    truth[empty, np.argmax(p[empty], axis=1)] = 1
    popularity = rng.permutation(np.arange(1, n + 1) ** -cfg.popularity_alpha)
    tracks = pd.DataFrame({
        "track_id": (1_000_001 + np.arange(n)).astype(str),
        "artist_id": [f"ar{a:04d}" for a in artist],
        "album_id": [f"al{b:05d}" for b in album],
        "title": [f"Track {i}" for i in range(n)],
        "energy": latent[:, 0], "valence": latent[:, 1], "popularity": popularity / popularity.sum(),
    })
    return tracks, truth


def _title(ctx: str, other: str, rng: np.random.Generator) -> tuple[str, bool]:
    """A title naming ``ctx`` (and ``other`` when the template has two keywords)."""
    tpl = TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))]
    title = tpl.format(k=ctx, K=ctx.upper(), Kc=ctx.capitalize(), k2=other, K2c=other.capitalize(),
                       year=int(rng.integers(2015, 2027)))
    return title, "2" in tpl


def _playlists(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
               users: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    n = len(tracks)
    pop = tracks["popularity"].to_numpy()
    ids = tracks[["track_id", "artist_id", "album_id"]].to_dict(orient="records")
    ctx_p = np.array([CONTEXT_POPULARITY[c] for c in contexts])
    prefs = np.stack(users["_prefs"].to_numpy())
    out: list[dict] = []

    def entries(idx: np.ndarray) -> list[dict]:
        return [ids[i] for i in idx]

    def pick(weights: np.ndarray, k: int) -> np.ndarray:
        w = weights / weights.sum()
        return rng.choice(n, size=min(k, int((w > 0).sum())), replace=False, p=w)

    for _ in range(cfg.n_context_playlists):
        u = rng.integers(len(users))
        w = prefs[u] * ctx_p
        c = rng.choice(len(contexts), p=w / w.sum())
        # some titles name a second context ("chill & relax"): then the tracks fit both
        c2 = rng.choice(len(contexts), p=w / w.sum())
        title, two = _title(contexts[c], contexts[c2], rng)
        fits = truth[:, c].astype(bool)
        if two and (fits & truth[:, c2].astype(bool)).sum() >= cfg.playlist_len[0]:
            fits &= truth[:, c2].astype(bool)
        size = int(rng.integers(cfg.playlist_len[0], cfg.playlist_len[1] + 1))
        n_stray = rng.binomial(size, cfg.stray_track_share)
        chosen = pick(pop * fits, size - n_stray) if fits.any() else np.array([], dtype=int)
        stray = pick(~np.isin(np.arange(n), chosen) * 1.0, n_stray)   # strays: any track, uniformly
        idx = rng.permutation(np.concatenate([chosen, stray]))
        out.append({"title": title, "user_id": users["user_id"].iat[u], "tracks": entries(idx)})

    for _ in range(cfg.n_noise_playlists):
        u = rng.integers(len(users))
        size = int(rng.integers(cfg.playlist_len[0], cfg.playlist_len[1] + 1))
        out.append({"title": NOISE_TITLES[rng.integers(len(NOISE_TITLES))],
                    "user_id": users["user_id"].iat[u], "tracks": entries(pick(pop, size))})

    artists = tracks["artist_id"].to_numpy()
    for j in range(cfg.n_filtered_playlists):
        u = rng.integers(len(users))
        c = contexts[rng.integers(len(contexts))]
        if j % 2 == 0:   # too long: a "mega mix" of more than 100 tracks
            idx = pick(pop, min(n, int(rng.integers(101, 160))))
            title = f"{c} mega mix"
        else:            # one artist dominates: "best of <artist> for the gym"
            a = artists[rng.integers(n)]
            own = np.nonzero(artists == a)[0]
            idx = rng.permutation(np.concatenate([own, pick(pop, max(1, len(own) // 2))]))
            title = f"best of {a} for {c}"
        out.append({"title": title, "user_id": users["user_id"].iat[u], "tracks": entries(np.unique(idx))})

    order = rng.permutation(len(out))
    return [{"playlist_id": str(50_000_001 + i), **out[k]} for i, k in enumerate(order)]


def _users(cfg: SynthConfig, contexts: Sequence[str], rng: np.random.Generator) -> pd.DataFrame:
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


def _events(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
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


def _feedback(tracks: pd.DataFrame, users: pd.DataFrame, events: pd.DataFrame, contexts: Sequence[str],
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
    p_like = 0.6 * _sigmoid(6 * (opinion + 0.1))
    p_skip = 0.6 * _sigmoid(6 * (-opinion - 0.4))
    feedback = np.full(len(events), None, dtype=object)
    feedback[r < p_like] = "like"
    skipped = (r >= p_like) & (r < p_like + p_skip)
    feedback[skipped] = np.where(rng.random(len(events)) < 0.1, "dislike", "skip")[skipped]
    taste = pd.DataFrame({"user_id": users["user_id"], "ideal_energy": ideal[:, 0], "ideal_valence": ideal[:, 1]})
    return feedback, taste


def _render_one(args: tuple[float, float, int, float, int, str]) -> dict:
    import soundfile as sf

    energy, valence, seed, seconds, sr, path = args
    rng = np.random.default_rng(seed)
    traits = traits_from_latent(energy, valence, rng)
    sf.write(path, render(traits, seconds, sr, rng), sr)
    return {"tempo_bpm": traits.tempo_bpm, "loudness_db": traits.loudness_db,
            "brightness": traits.brightness, "major": traits.major, "percussion": traits.percussion}


def generate(cfg: SynthConfig, contexts: Sequence[str], seed: int, out: Path, workers: int = 2,
             audio: bool = True) -> World:
    """Write the world under ``out``: tracks.csv, users.csv, playlists.jsonl, listening_logs/,
    audio/, and truth/ (complete true labels, traits, true contexts of events)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    for sub in ("audio", "truth", "listening_logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tracks, truth = _catalogue(cfg, contexts, rng)
    users = _users(cfg, contexts, rng)
    playlists = _playlists(cfg, contexts, tracks, truth, users, rng)
    events = _events(cfg, contexts, tracks, truth, users, rng)
    # feedback draws from its own stream so adding it left every other draw of the world unchanged
    events["feedback"], taste = _feedback(tracks, users, events, contexts, np.random.default_rng([seed, 6]))

    tracks["audio_path"] = [f"audio/{t}.{cfg.audio_format}" for t in tracks["track_id"]]
    tracks["duration_s"] = cfg.clip_seconds
    if audio:
        seeds = rng.integers(0, 2**31, size=len(tracks))
        jobs = [(e, v, int(s), cfg.clip_seconds, cfg.sample_rate, str(out / p))
                for e, v, s, p in zip(tracks["energy"], tracks["valence"], seeds, tracks["audio_path"], strict=True)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            traits = list(progress(pool.map(_render_one, jobs, chunksize=8), total=len(jobs),
                                   description="rendering audio"))
        pd.concat([tracks[["track_id"]], pd.DataFrame(traits)], axis=1).to_csv(out / "truth/audio_traits.csv", index=False)

    true_labels = pd.DataFrame(truth, columns=list(contexts)).assign(track_id=tracks["track_id"])
    true_labels = true_labels[["track_id", *contexts]]
    true_labels.to_csv(out / "truth/true_labels.csv", index=False)
    tracks[["track_id", "energy", "valence", "popularity"]].to_csv(out / "truth/track_latent.csv", index=False)
    tracks[["track_id", "artist_id", "album_id", "title", "duration_s", "audio_path"]].to_csv(out / "tracks.csv", index=False)
    users.drop(columns=["_prefs", "activity"]).to_csv(out / "users.csv", index=False)
    pd.DataFrame(np.stack(users["_prefs"].to_numpy()), columns=list(contexts)).assign(
        user_id=users["user_id"]).to_csv(out / "truth/user_preferences.csv", index=False)
    taste.to_csv(out / "truth/user_taste.csv", index=False)
    with (out / "playlists.jsonl").open("w", encoding="utf-8") as fh:
        for p in playlists:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    # one CSV per local day, as a log shipper would deliver them; the truth stays apart
    events["_day"] = events["_local"].dt.strftime("%Y-%m-%d")
    for day, part in events.groupby("_day"):
        part.drop(columns=["true_context", "_local", "_day"]).to_csv(out / f"listening_logs/{day}.csv", index=False)
    events[["user_id", "track_id", "timestamp", "true_context"]].to_csv(out / "truth/event_contexts.csv", index=False)
    summary = {"tracks": len(tracks), "artists": int(tracks["artist_id"].nunique()),
               "albums": int(tracks["album_id"].nunique()), "users": len(users),
               "playlists": len(playlists), "events": len(events),
               "true_labels_per_track": float(truth.sum(1).mean())}
    (out / "truth/world.json").write_text(json.dumps(summary, indent=2))
    return World(tracks, true_labels, users, playlists, events)
