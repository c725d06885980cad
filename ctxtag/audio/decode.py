"""Decoding, resampling and cropping: any wav/flac/ogg/mp3 -> the model's 30 s mono clip.

The crop follows the paper: 30 s starting at 30 s, matching Deezer's previews. A track shorter
than offset + duration is cropped from its start instead, and padded with silence to length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctxtag.config import AudioConfig


class AudioError(ValueError):
    """An audio file cannot be used (corrupt, empty or silent); names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def decode(path: str | Path, sr: int, max_s: float | None = None) -> np.ndarray:
    """Mono float32 at ``sr``: soundfile (wav/flac/ogg/mp3), librosa's audioread as a fallback.
    ``max_s``: decode only the file's first seconds (memory bounded whatever the file's length)."""
    import soundfile as sf

    path = Path(path)
    try:
        with sf.SoundFile(path) as f:
            native_sr = f.samplerate
            data = f.read(-1 if max_s is None else int(max_s * native_sr), dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        try:
            import librosa

            data, native_sr = librosa.load(path, sr=None, mono=True, duration=max_s)
        except Exception as fallback:  # noqa: BLE001 - any decoder failure means the same to callers
            raise AudioError(path, f"cannot decode ({exc}; {type(fallback).__name__}: {fallback})") from fallback
    if data.size == 0:
        raise AudioError(path, "no audio samples")
    if native_sr != sr:
        import soxr

        data = soxr.resample(data, native_sr, sr, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


def crop(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The ``duration`` window from ``offset`` (from 0 when the track is too short), padded."""
    n, start = cfg.n_samples, int(round(cfg.offset_s * cfg.sample_rate))
    if len(y) < start + n:
        start = 0
    out = y[start:start + n]
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return out


def windows(y: np.ndarray, cfg: AudioConfig, max_windows: int) -> np.ndarray:
    """A whole track as back-to-back windows of the crop's length, (k, n_samples): a partial last
    window is left out (a track shorter than one window is one padded window), and beyond
    ``max_windows`` that many are taken, evenly spread from the first to the last."""
    n = cfg.n_samples
    k = len(y) // n
    if k == 0:
        return np.pad(y, (0, n - len(y)))[None]
    starts = np.arange(k) * n
    if k > max_windows:
        starts = starts[np.round(np.linspace(0, k - 1, max_windows)).astype(int)]
    return y[starts[:, None] + np.arange(n)]


def _checked(path: str | Path, clip: np.ndarray, cfg: AudioConfig, what: str = "clip") -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
    if not np.isfinite(rms):
        raise AudioError(path, "audio contains NaN or infinite samples")
    if rms < cfg.silence_rms:
        raise AudioError(path, f"silent {what} (RMS {rms:.2e} < {cfg.silence_rms:.0e})")
    return clip


def _clip_s(cfg: AudioConfig) -> float:
    """What the crop can use, plus a second so the resampler's edge falls outside it."""
    return cfg.offset_s + cfg.duration_s + 1.0


def load_clip(path: str | Path, cfg: AudioConfig) -> np.ndarray:
    """Decode (only ``_clip_s``), resample, crop; raise AudioError for a silent clip. A 2 h upload
    costs what a 61 s one does."""
    return _checked(path, crop(decode(path, cfg.sample_rate, max_s=_clip_s(cfg)), cfg), cfg)


def load_windows(path: str | Path, cfg: AudioConfig, max_windows: int, max_track_s: float) -> np.ndarray:
    """A track's windows (``windows``) from its first ``max_track_s`` seconds (memory bounded
    whatever the file's length); AudioError for a silent track."""
    return windows(_checked(path, decode(path, cfg.sample_rate, max_s=max_track_s), cfg, "track"), cfg, max_windows)


def load_track(path: str | Path, cfg: AudioConfig, max_windows: int, max_track_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``load_clip`` and ``load_windows`` of one file from one decode (the longer of their two
    reads, each then cut to its own length: the same samples, tested)."""
    y = decode(path, cfg.sample_rate, max_s=max(_clip_s(cfg), max_track_s))
    clip = _checked(path, crop(y[:int(round(_clip_s(cfg) * cfg.sample_rate))], cfg), cfg)
    track = _checked(path, y[:int(round(max_track_s * cfg.sample_rate))], cfg, "track")
    return clip, windows(track, cfg, max_windows)
