from pathlib import Path

import numpy as np
import pytest
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


def test_cache_key_follows_the_front_end_code(tmp_path, monkeypatch):
    """Editing decode.py or melspec.py changes the key: a new front-end never reads old mels."""
    from ctxtag.audio import mel_cache

    version = mel_cache.frontend_version()
    assert version == mel_cache.frontend_version() and len(version) == 16
    key = mel_cache.config_key(CFG)
    assert mel_cache.config_key(AudioConfig(duration_s=2.0, offset_s=0.0)) == key   # deterministic
    clip = _clip(tmp_path / "a.wav", 0)
    first = extract(["a"], [clip], CFG, tmp_path / "cache")
    assert extract(["a"], [clip], CFG, tmp_path / "cache").cache_hits == 1

    monkeypatch.setattr(mel_cache, "frontend_version", lambda: "edited-front-end")
    assert mel_cache.config_key(CFG) != key
    assert mel_cache.content_key(clip, mel_cache.config_key(CFG)) != mel_cache.content_key(clip, key)
    again = extract(["a"], [clip], CFG, tmp_path / "cache")
    assert again.cache_hits == 0                              # recomputed, not served stale
    np.testing.assert_array_equal(again.mels, first.mels)


def test_front_end_version_hashes_the_front_end_source(monkeypatch, tmp_path):
    from ctxtag.audio import decode, mel_cache, melspec

    assert {m.__name__ for m in mel_cache.FRONTEND_MODULES} == {decode.__name__, melspec.__name__, mel_cache.__name__}
    before = mel_cache.frontend_version()
    edited = tmp_path / "melspec.py"
    edited.write_bytes(Path(melspec.__file__).read_bytes() + b"\n# a changed front-end\n")
    monkeypatch.setattr(melspec, "__file__", str(edited))
    mel_cache.frontend_version.cache_clear()
    try:
        assert mel_cache.frontend_version() != before
    finally:
        monkeypatch.undo()
        mel_cache.frontend_version.cache_clear()
    assert mel_cache.frontend_version() == before


def test_an_unreadable_cache_entry_is_recomputed_not_served(tmp_path, capsys):
    clips = [_clip(tmp_path / f"{i}.wav", i) for i in range(2)]
    cache = tmp_path / "cache"
    first = extract(["a", "b"], clips, CFG, cache)
    entries = sorted(cache.glob("*.npy"))
    entries[0].write_bytes(entries[0].read_bytes()[:100])          # truncated, as a pre-atomic crash left it
    again = extract(["a", "b"], clips, CFG, cache)
    assert again.cache_hits == 1
    np.testing.assert_array_equal(again.mels, first.mels)
    assert "unreadable mel cache entry" in capsys.readouterr().err
    assert extract(["a", "b"], clips, CFG, cache).cache_hits == 2    # and the entry was replaced


EXTRACTOR = """
import sys
from pathlib import Path
from ctxtag.audio.mel_cache import extract
from ctxtag.config import AudioConfig
clips = sorted(Path(sys.argv[1]).glob("*.wav"))
extract([c.stem for c in clips], clips, AudioConfig(duration_s=2.0, offset_s=0.0), Path(sys.argv[2]))
"""


@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_kill_9_mid_extraction_leaves_only_whole_entries(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    audio = tmp_path / "audio"
    audio.mkdir()
    clips = [_clip(audio / f"{i:03d}.wav", i) for i in range(150)]
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", EXTRACTOR, str(audio), str(cache)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(cache.glob("*.npy"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL                    # killed, not finished
    finally:
        if proc.poll() is None:
            proc.kill()
    written = list(cache.glob("*.npy"))
    assert 5 <= len(written) < len(clips)
    for entry in written:                                                  # every entry whole
        assert np.load(entry).shape == (CFG.n_mels, CFG.n_frames)
    resumed = extract([c.stem for c in clips], clips, CFG, cache)
    assert resumed.cache_hits == len(written) and len(resumed.track_ids) == len(clips)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []   # no temp left behind
