"""What real catalogue audio does to a clip, for the tagger's robustness report.

A perturbation is written ``kind:value``: ``gain:-6`` (dB), ``noise:20`` (white noise at that SNR
in dB), ``stretch:0.9`` (tempo x0.9, pitch kept), ``pitch:2`` (semitones, tempo kept), ``mp3:64``
(re-encoded as constant-bitrate MP3 at about that many kbps, then decoded). Every result has the
clip's length (a stretched clip is cropped or zero-padded), so it goes through the same front-end.
"""

from __future__ import annotations

import functools
import io

import numpy as np

KINDS = ("gain", "noise", "stretch", "pitch", "mp3")


def parse(spec: str) -> tuple[str, float]:
    kind, _, value = spec.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind not in KINDS or not np.isfinite(number):
        raise ValueError(f"perturbation {spec!r}: write kind:value with kind one of {KINDS}")
    if kind in ("stretch", "mp3") and number <= 0:
        raise ValueError(f"perturbation {spec!r}: the value must be positive")
    return kind, number


def apply_all(clips: list[np.ndarray], sr: int, spec: str, seed: int, workers: int = 2) -> list[np.ndarray]:
    """``apply`` to every clip, in ``workers`` threads (the encoders, resamplers and FFTs release
    the GIL); clip i draws its noise from its own generator, so the result does not depend on the
    threads."""
    from concurrent.futures import ThreadPoolExecutor

    rngs = np.random.default_rng(seed).spawn(len(clips))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda i: apply(clips[i], sr, spec, rngs[i]), range(len(clips))))


def apply(clip: np.ndarray, sr: int, spec: str, rng: np.random.Generator) -> np.ndarray:
    """The perturbed clip, float32, of ``clip``'s length."""
    kind, value = parse(spec)
    x = np.asarray(clip, dtype=np.float32)
    if kind == "gain":
        out = x * np.float32(10 ** (value / 20))
    elif kind == "noise":
        power = float(np.mean(np.square(x, dtype=np.float64)))
        out = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (value / 10)))
    elif kind == "stretch":
        import librosa

        out = librosa.effects.time_stretch(x, rate=value)
    elif kind == "pitch":
        import librosa

        out = librosa.effects.pitch_shift(x, sr=sr, n_steps=value)
    else:
        out = _mp3(x, sr, value)
    return _fit(np.asarray(out, dtype=np.float32), len(x))


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _mp3(x: np.ndarray, sr: int, kbps: float) -> np.ndarray:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), sr, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
             compression_level=mp3_level(sr, kbps)[0])
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out if out.ndim == 1 else out.mean(axis=1)


@functools.lru_cache(maxsize=16)
def mp3_level(sr: int, kbps: float) -> tuple[float, float]:
    """(libsndfile compression level, the bitrate it gives): libsndfile sets MP3 bitrates by a level
    in [0, 1] whose scale depends on the sample rate, so the level is found by encoding 1 s of
    noise at each of 41 levels and keeping the closest."""
    import soundfile as sf

    noise = (np.random.default_rng(0).standard_normal(sr) * 0.1).astype(np.float32)
    best = (0.0, float("inf"))
    for level in np.linspace(0, 1, 41):
        buf = io.BytesIO()
        try:
            sf.write(buf, noise, sr, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
                     compression_level=float(level))
        except sf.LibsndfileError:               # a level this sample rate has no bitrate for
            continue
        rate = len(buf.getvalue()) * 8 / 1000
        if abs(rate - kbps) < abs(best[1] - kbps):
            best = (float(level), rate)
    return best
