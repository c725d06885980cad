import numpy as np
import pytest
import soundfile as sf

from ctxtag.audio.decode import (
    AudioError,
    crop,
    decode,
    load_clip,
    load_track,
    load_windows,
    windows,
)
from ctxtag.config import AudioConfig
from tests.conftest import SHARED

CFG = AudioConfig()


def _tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "ext"), [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_decodes_every_format_to_mono_22050(tmp_path, fmt, ext):
    stereo = np.stack([_tone(2, 44100), _tone(2, 44100, 660)], axis=1)
    path = tmp_path / f"x.{ext}"
    sf.write(path, stereo, 44100, format=fmt)
    y = decode(path, 22050)
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) - 2 * 22050) < 0.01 * 22050          # lossy codecs add a little padding


def test_crop_takes_30_s_from_30_s_when_long_enough():
    sr = CFG.sample_rate
    y = np.zeros(int(70 * sr), np.float32)
    y[int(30 * sr)] = 1.0                                    # a click at 30 s and one at 60 s - 1 sample
    y[int(60 * sr) - 1] = 2.0
    out = crop(y, CFG)
    assert len(out) == CFG.n_samples == 661_500
    assert out[0] == 1.0 and out[-1] == 2.0


def test_short_track_crops_from_start_and_pads():
    sr = CFG.sample_rate
    y = np.arange(int(45 * sr), dtype=np.float32)            # shorter than 30 + 30 s
    out = crop(y, CFG)
    assert out[0] == 0 and len(out) == CFG.n_samples
    tiny = np.ones(int(10 * sr), np.float32)
    padded = crop(tiny, CFG)
    assert padded[: len(tiny)].all() and not padded[len(tiny):].any()


def test_corrupt_and_silent_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS" + b"\x00" * 100)
    with pytest.raises(AudioError, match=r"bad\.ogg: cannot decode"):
        load_clip(bad, CFG)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050 * 3, np.float32), 22050)
    with pytest.raises(AudioError, match=r"silent\.wav: silent clip"):
        load_clip(silent, CFG)


def test_real_clip_loads_at_full_length():
    clips = sorted((SHARED / "audio").glob("*.ogg"))
    if not clips:
        pytest.skip("real clips not present under ../shared/data/audio")
    y = load_clip(clips[0], CFG)
    assert y.shape == (661_500,) and 0.001 < np.sqrt(np.mean(y**2)) < 1


def test_a_long_upload_is_decoded_only_as_far_as_the_crop(tmp_path):
    """A 2 h file costs what a 61 s one does: decoding stops after offset + duration + 1 s."""
    cfg = AudioConfig()
    path = tmp_path / "two_hours.flac"
    sr = 8_000
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC") as f:
        block = (0.3 * np.sin(np.arange(sr * 60) * 0.05)).astype(np.float32)
        for _ in range(120):
            f.write(block)
    assert path.stat().st_size < 30 * 2**20
    head = decode(path, cfg.sample_rate, max_s=cfg.offset_s + cfg.duration_s + 1)
    assert len(head) == int(round((cfg.offset_s + cfg.duration_s + 1) * cfg.sample_rate))
    clip = load_clip(path, cfg)
    assert len(clip) == cfg.n_samples and np.abs(clip).max() > 0.1


def test_windows_cover_the_track_back_to_back_and_spread_when_there_are_too_many():
    cfg = AudioConfig(sample_rate=100, duration_s=1.0)              # windows of 100 samples
    y = np.arange(1050, dtype=np.float32)
    w = windows(y, cfg, max_windows=16)
    assert w.shape == (10, 100) and (w.reshape(-1) == y[:1000]).all()   # the partial tail is left out
    few = windows(y, cfg, max_windows=4)
    assert few.shape == (4, 100) and [int(r[0]) for r in few] == [0, 300, 600, 900]   # first and last kept
    short = windows(y[:40], cfg, max_windows=4)                      # shorter than a window: one, padded
    assert short.shape == (1, 100) and (short[0, :40] == y[:40]).all() and not short[0, 40:].any()


def test_load_windows_reads_at_most_max_track_s(tmp_path):
    cfg = AudioConfig(duration_s=2.0)
    path = tmp_path / "long.wav"
    sf.write(path, _tone(30, cfg.sample_rate), cfg.sample_rate)
    assert load_windows(path, cfg, max_windows=64, max_track_s=9.0).shape == (4, cfg.n_samples)
    assert load_windows(path, cfg, max_windows=64, max_track_s=100.0).shape == (15, cfg.n_samples)
    sf.write(tmp_path / "silent.wav", np.zeros(cfg.sample_rate * 5, np.float32), cfg.sample_rate)
    with pytest.raises(AudioError, match="silent.wav: silent track"):
        load_windows(tmp_path / "silent.wav", cfg, 4, 100.0)


@pytest.mark.parametrize("max_track_s", [20.0, 900.0])
def test_load_track_is_load_clip_and_load_windows_from_one_decode(max_track_s):
    clips = sorted((SHARED / "audio").glob("*.ogg"))                # 44.1 kHz: resampled to 22.05 kHz
    if not clips:
        pytest.skip("real clips not present under ../shared/data/audio")
    cfg = AudioConfig(duration_s=6.0)
    clip, wins = load_track(clips[0], cfg, 16, max_track_s)
    assert np.array_equal(clip, load_clip(clips[0], cfg))
    assert np.array_equal(wins, load_windows(clips[0], cfg, 16, max_track_s))
