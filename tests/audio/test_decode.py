import numpy as np
import pytest
import soundfile as sf

from ctxtag.audio.decode import AudioError, crop, decode, load_clip
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
