"""The generated catalogue (artists, albums, tracks with a latent energy/valence) and the playlists
users build from it, titled after a context in many spellings, with noise and filter bait."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ctxtag.config import SynthConfig
from ctxtag.world.profiles import (
    CONTEXT_POPULARITY,
    NOISE_TITLES,
    TITLE_TEMPLATES,
    true_context_probability,
)


def catalogue(cfg: SynthConfig, contexts: Sequence[str], rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
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


def make_title(ctx: str, other: str, rng: np.random.Generator) -> tuple[str, bool]:
    """A title naming ``ctx`` (and ``other`` when the template has two keywords)."""
    tpl = TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))]
    title = tpl.format(k=ctx, K=ctx.upper(), Kc=ctx.capitalize(), k2=other, K2c=other.capitalize(),
                       year=int(rng.integers(2015, 2027)))
    return title, "2" in tpl


def playlists(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
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
        title, two = make_title(contexts[c], contexts[c2], rng)
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
