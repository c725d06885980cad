"""Music-shaped clips whose tempo, brightness, loudness and mode follow a track's traits.

A clip is a chord progression (major or minor, by valence) voiced with harmonics whose roll-off
sets the brightness, a melody on the scale, a kick on every beat and hi-hats on the off-beats
whose strength grows with energy, all at a tempo and loudness set by energy. A model that hears
these cues can learn the contexts that the traits imply — and only those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


@dataclass(frozen=True)
class AudioTraits:
    tempo_bpm: float
    loudness_db: float     # target RMS in dBFS
    brightness: float      # 0..1: harmonic roll-off and hi-hat level
    major: bool
    root_midi: int
    percussion: float      # 0..1: kick/hat level


def traits_from_latent(energy: float, valence: float, rng: np.random.Generator) -> AudioTraits:
    """Map the latent (energy, valence) of a track to audible parameters, with noise."""
    return AudioTraits(
        tempo_bpm=float(np.clip(62 + 105 * energy + rng.normal(0, 6), 55, 185)),
        loudness_db=float(np.clip(-30 + 18 * energy + rng.normal(0, 1.5), -34, -9)),
        brightness=float(np.clip(0.15 + 0.6 * energy + 0.25 * valence + rng.normal(0, 0.06), 0, 1)),
        major=bool(rng.random() < 1 / (1 + np.exp(-12 * (valence - 0.5)))),
        root_midi=int(rng.integers(45, 57)),
        percussion=float(np.clip(1.4 * energy - 0.25 + rng.normal(0, 0.05), 0, 1)),
    )


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)


def _voice(freq: np.ndarray, sr: int, brightness: float, n_harm: int = 5) -> np.ndarray:
    """Sum of harmonics with a brightness-controlled roll-off; freq is per-sample (n,). Harmonic k
    is sin(k x) by the recurrence sin(kx) = 2 cos(x) sin((k-1)x) - sin((k-2)x): two transcendental
    calls for all the harmonics instead of one each."""
    phase = ((2 * np.pi / sr) * np.cumsum(freq) % (2 * np.pi)).astype(np.float32)
    out = np.zeros(len(freq), dtype=np.float32)
    two_cos = 2 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    top = float(np.max(freq)) if len(freq) else 0.0
    total = 0.0
    for k in range(1, n_harm + 1):
        amp = k ** -(3.0 - 2.4 * brightness)        # dark: steep roll-off; bright: flat
        if top * k < 10_000:                         # no sample's harmonic is above 10 kHz
            out += cur * np.float32(amp)
        else:
            out += cur * np.float32(amp) * (freq * k < 10_000)
        total += amp
        prev, cur = cur, two_cos * cur - prev
    return out / np.float32(total)


def render(traits: AudioTraits, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A mono float32 clip in [-1, 1]: a 4-bar loop (one pass of the progression), tiled."""
    beat = 60.0 / traits.tempo_bpm
    bar = 4 * beat
    n = int(round(seconds * sr))
    loop = min(n, int(round(4 * bar * sr)))
    clip = _render_loop(traits, loop / sr, sr, rng)
    return np.resize(clip, n) if loop < n else clip


def _render_loop(traits: AudioTraits, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    scale = MAJOR if traits.major else MINOR
    beat = 60.0 / traits.tempo_bpm
    bar = 4 * beat

    # harmony: I-V-vi-IV (major) or i-VI-III-VII (minor) degrees, one chord per bar
    degrees = np.array([0, 4, 5, 3]) if traits.major else np.array([0, 5, 2, 6])
    bar_idx = (t // bar).astype(np.int64) % 4
    # the notes of the four bars, then per sample (a lookup, not a power per sample)
    chord_root = traits.root_midi + scale[degrees]
    third = traits.root_midi + scale[(degrees + 2) % 7] + 12 * ((degrees + 2) // 7)
    fifth = traits.root_midi + scale[(degrees + 4) % 7] + 12 * ((degrees + 4) // 7)
    pad = sum(_voice(_midi_hz(note)[bar_idx], sr, traits.brightness) for note in (chord_root, third, fifth)) / 3

    # melody: a random walk on the scale, one note per beat (two per beat when energetic)
    step = beat / (2 if traits.tempo_bpm > 120 else 1)
    n_notes = int(np.ceil(seconds / step)) + 1
    walk = np.clip(np.cumsum(rng.integers(-2, 3, n_notes)), -5, 9)
    melody_note = traits.root_midi + 12 + scale[walk % 7] + 12 * (walk // 7)
    note_idx = np.minimum((t // step).astype(np.int64), n_notes - 1)
    env = np.exp(-((t % step) / step) * 3.0)
    melody = _voice(_midi_hz(melody_note)[note_idx], sr, traits.brightness, n_harm=4) * env

    # percussion: kick on beats, hi-hat on off-beats
    since_beat = t % beat
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-since_beat * 30)) * since_beat) * np.exp(-since_beat * 18)
    since_off = (t + beat / 2) % beat
    hat = rng.standard_normal(n, dtype=np.float32) * np.exp(-since_off * 60)
    hat = np.diff(hat, prepend=0.0)                  # crude high-pass: brighter hats
    drums = traits.percussion * (0.9 * kick + 0.35 * traits.brightness * hat)

    mix = 0.55 * pad + 0.35 * melody + drums + 0.003 * rng.standard_normal(n, dtype=np.float32)
    rms = np.sqrt(np.mean(mix**2)) + 1e-12
    mix *= 10 ** (traits.loudness_db / 20) / rms
    return np.clip(mix, -1.0, 1.0).astype(np.float32)
