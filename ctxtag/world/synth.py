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
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.progress import progress
from ctxtag.config import SynthConfig
from ctxtag.world import catalogue, eventlog, listeners
from ctxtag.world.synth_audio import render, traits_from_latent


@dataclass
class World:
    """The generated world, as written to ``raw``. ``events`` is every event as one frame (with
    its true context, feedback and ``_local`` time), built when first asked for, when they were
    drawn in one chunk; None when they were drawn and written chunk by chunk. ``n_events`` counts
    them either way."""

    tracks: pd.DataFrame
    true_labels: pd.DataFrame
    users: pd.DataFrame
    playlists: catalogue.Playlists
    n_events: int
    events_frame: Callable[[], pd.DataFrame] | None = field(default=None, repr=False)

    @cached_property
    def events(self) -> pd.DataFrame | None:
        return None if self.events_frame is None else self.events_frame()


def _render_one(args: tuple[float, float, int, float, int, str]) -> dict:
    import soundfile as sf

    energy, valence, seed, seconds, sr, path = args
    rng = np.random.default_rng(seed)
    traits = traits_from_latent(energy, valence, rng)
    sf.write(path, render(traits, seconds, sr, rng), sr)
    return {"tempo_bpm": traits.tempo_bpm, "loudness_db": traits.loudness_db,
            "brightness": traits.brightness, "major": traits.major, "percussion": traits.percussion}


def _frame(batch: listeners.EventBatch, codes: np.ndarray, contexts: Sequence[str], tracks: pd.DataFrame,
           users: pd.DataFrame) -> pd.DataFrame:
    frame = listeners.events_frame(batch, contexts, tracks, users)
    frame["feedback"] = np.array([None, *listeners.FEEDBACK[1:]], dtype=object)[codes]
    return frame


def _write_events(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
                  users: pd.DataFrame, seed: int, rng: np.random.Generator, out: Path,
                  chunk: int | None) -> tuple[int, Callable[[], pd.DataFrame] | None, pd.DataFrame]:
    """Draw and write the listening events chunk by chunk (memory bounded by the chunk, not by
    n_events), one CSV per local day as a log shipper would deliver them, the truth apart: chunk 0
    from the world's generator, as the one-frame version drew them, chunk i >= 1 from its own
    stream ``[seed, 7, i]``. Returns the number written, what builds the events as one frame when
    there is a single chunk (else None), and the users' taste."""
    sizes = listeners.chunk_sizes(cfg.n_events, chunk)
    tables = listeners.EventTables(cfg, contexts, tracks, truth, users)
    # feedback draws from its own streams so adding it left every other draw of the world unchanged
    feedback = listeners.Feedback(tracks, users, contexts, seed)
    log = eventlog.EventLog(out, contexts, tracks, users)
    frame = None
    parts = range(len(sizes))
    try:
        for i in (progress(parts, total=len(sizes), description="listening events") if len(sizes) > 1 else parts):
            batch = listeners.draw_events(tables, rng if i == 0 else np.random.default_rng([seed, 7, i]), sizes[i])
            codes = feedback.draw(batch.user, batch.track, chunk=i)
            log.write(batch, codes, part=i)
            if len(sizes) == 1:
                frame = partial(_frame, batch, codes, contexts, tracks, users)
    finally:
        log.close()
    return log.rows, frame, feedback.taste


def generate(cfg: SynthConfig, contexts: Sequence[str], seed: int, out: Path, workers: int = 2,
             audio: bool = True, chunk: int | None = None) -> World:
    """Write the world under ``out``: tracks.csv, users.csv, playlists.jsonl, listening_logs/,
    audio/, and truth/ (complete true labels, traits, true contexts of events). Events are drawn
    and written ``chunk`` at a time (default listeners.CHUNK)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    for sub in ("audio", "truth", "listening_logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tracks, truth = catalogue.catalogue(cfg, contexts, rng)
    users = listeners.users(cfg, contexts, rng)
    playlists = catalogue.playlists(cfg, contexts, tracks, truth, users, rng)
    n_events, events, taste = _write_events(cfg, contexts, tracks, truth, users, seed, rng, out, chunk)
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
    playlists.write_jsonl(out / "playlists.jsonl")
    summary = {"tracks": len(tracks), "artists": int(tracks["artist_id"].nunique()),
               "albums": int(tracks["album_id"].nunique()), "users": len(users),
               "playlists": len(playlists), "events": n_events,
               "true_labels_per_track": float(truth.sum(1).mean())}
    (out / "truth/world.json").write_text(json.dumps(summary, indent=2))
    return World(tracks, true_labels, users, playlists, n_events, events)
