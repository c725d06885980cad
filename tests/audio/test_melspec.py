import librosa
import numpy as np
import pytest
import torch

from ctxtag.audio.decode import load_clip
from ctxtag.audio.melspec import LogMel
from ctxtag.config import AudioConfig
from tests.conftest import SHARED

CFG = AudioConfig()


def _reference(clip: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=clip, sr=CFG.sample_rate, n_fft=CFG.n_fft,
                                         hop_length=CFG.hop_length, n_mels=CFG.n_mels, power=CFG.power)
    return np.log1p(CFG.log_scale * mel)


def test_shape_is_96_by_646_for_30_s():
    out = LogMel(CFG)(torch.zeros(2, CFG.n_samples))
    assert tuple(out.shape) == (2, 96, 646) == (2, CFG.n_mels, CFG.n_frames)


def test_parity_with_librosa_on_a_chirp():
    t = np.arange(CFG.n_samples) / CFG.sample_rate
    clip = (0.5 * np.sin(2 * np.pi * (100 + 150 * t) * t)).astype(np.float32)
    ours = LogMel(CFG)(torch.from_numpy(clip)[None])[0].numpy()
    np.testing.assert_allclose(ours, _reference(clip), atol=1e-4, rtol=1e-4)


@pytest.mark.realdata
def test_parity_with_librosa_on_real_clips():
    clips = sorted((SHARED / "audio").glob("*.ogg"))
    if not clips:
        pytest.skip("real clips not present under ../shared/data/audio")
    frontend = LogMel(CFG)
    for path in clips:
        clip = load_clip(path, CFG)
        ours = frontend(torch.from_numpy(clip)[None])[0].numpy()
        ref = _reference(clip)
        assert np.abs(ours - ref).max() < 1e-3 * max(ref.max(), 1), path.name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on the GPU machine)")
def test_same_module_on_cuda_matches_cpu():
    clip = torch.randn(2, CFG.n_samples) * 0.1
    cpu = LogMel(CFG)(clip)
    gpu = LogMel(CFG).cuda()(clip.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(("sr", "n_fft", "n_mels"), [(22050, 1024, 96), (16000, 512, 40), (44100, 2048, 128)])
def test_the_filterbank_is_librosas_to_the_last_bit(sr, n_fft, n_mels):
    from ctxtag.audio.melspec import slaney_filterbank

    np.testing.assert_array_equal(slaney_filterbank(sr, n_fft, n_mels),
                                  librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))


def test_the_front_end_does_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys; from ctxtag.audio.melspec import LogMel; from ctxtag.config import AudioConfig; "
            "LogMel(AudioConfig()); print('librosa' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
