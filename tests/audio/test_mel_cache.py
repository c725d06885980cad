import numpy as np
import soundfile as sf

from ctxtag.audio.mel_cache import extract
from ctxtag.config import AudioConfig

CFG = AudioConfig(duration_s=2.0, offset_s=0.0)


def _clip(path, seed):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(22050 * 2)).astype(np.float32), 22050)
    return path


def test_cache_and_bad_files_are_skipped_with_reasons(tmp_path):
    good = [_clip(tmp_path / f"{i}.wav", i) for i in range(3)]
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC garbage")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050 * 2, np.float32), 22050)
    ids = ["a", "b", "x", "c", "s", "m"]
    paths = [good[0], good[1], corrupt, good[2], silent, tmp_path / "missing.wav"]
    cache = tmp_path / "cache"

    first = extract(ids, paths, CFG, cache)
    assert first.track_ids == ["a", "b", "c"]
    assert first.mels.shape == (3, CFG.n_mels, CFG.n_frames) and first.mels.dtype == np.float16
    reasons = {s["track_id"]: s["reason"] for s in first.skipped}
    assert set(reasons) == {"x", "s", "m"}
    assert reasons["x"].startswith("cannot decode") and reasons["s"].startswith("silent")
    assert reasons["m"] == "file not found"
    assert first.cache_hits == 0

    second = extract(ids, paths, CFG, cache)
    assert second.cache_hits == 3
    np.testing.assert_array_equal(second.mels, first.mels)
    # a different front-end setting is a different cache entry
    other = extract(["a"], [good[0]], AudioConfig(duration_s=2.0, offset_s=0.0, n_mels=64), cache)
    assert other.cache_hits == 0 and other.mels.shape[1] == 64
