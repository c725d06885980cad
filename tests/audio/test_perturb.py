"""The robustness report's perturbations do what their names say, keep the clip's length, and do
not depend on how many threads apply them."""

from __future__ import annotations

import numpy as np
import pytest

from ctxtag.audio import perturb

SR = 22050


def _tone(hz: float, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)])


def test_gain_and_noise_by_their_numbers():
    x, rng = _tone(440), np.random.default_rng(0)
    np.testing.assert_allclose(perturb.apply(x, SR, "gain:-6", rng), x * 10 ** (-6 / 20), rtol=1e-6)
    noisy = perturb.apply(x, SR, "noise:20", rng)
    snr = 10 * np.log10(np.mean(x.astype(float) ** 2) / np.mean((noisy - x).astype(float) ** 2))
    assert snr == pytest.approx(20, abs=0.3)


def test_stretch_keeps_pitch_and_pitch_keeps_length():
    x, rng = _tone(440), np.random.default_rng(0)
    for spec in ("stretch:0.9", "stretch:1.1", "pitch:2", "mp3:64"):
        assert len(perturb.apply(x, SR, spec, rng)) == len(x), spec
    assert _peak_hz(perturb.apply(x, SR, "stretch:1.1", rng)[: len(x) // 2]) == pytest.approx(440, rel=0.02)
    assert _peak_hz(perturb.apply(x, SR, "pitch:2", rng)) == pytest.approx(440 * 2 ** (2 / 12), rel=0.02)


def test_mp3_is_reencoded_near_the_bitrate_asked():
    level, kbps = perturb.mp3_level(SR, 64)
    assert 0 <= level <= 1 and abs(kbps - 64) < 10
    x = _tone(440) + np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 0.01
    y = perturb.apply(x, SR, "mp3:64", np.random.default_rng(0))
    assert not np.array_equal(x, y) and _peak_hz(y) == pytest.approx(440, rel=0.01)


def test_threads_do_not_change_the_result_and_bad_specs_are_refused():
    clips = [_tone(hz, 1.0) for hz in (220, 330, 440, 550)]
    one = perturb.apply_all(clips, SR, "noise:10", seed=3, workers=1)
    two = perturb.apply_all(clips, SR, "noise:10", seed=3, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    for bad in ("loud:3", "gain", "gain:x", "stretch:0", "mp3:-64"):
        with pytest.raises(ValueError, match="perturbation"):
            perturb.parse(bad)
