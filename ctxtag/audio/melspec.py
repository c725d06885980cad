"""Log-mel front-end in plain torch, so the same module runs on CPU and GPU inside the model.

power spectrogram (torch.stft, Hann window, centred with zero padding as librosa >= 0.10) ->
librosa's Slaney mel filterbank (a buffer) -> log(1 + 100 x). For the paper's settings
(22,050 Hz, n_fft 1024, hop 1024, 96 bands) a 30 s clip gives 96 x 646.

The filterbank is librosa.filters.mel's, computed here in numpy (equal to the last bit, tested):
importing librosa pulls in scipy and numba, ~2 s before `ctxtag predict` reads its first file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctxtag.config import AudioConfig

F_SP = 200.0 / 3                       # Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz) ...
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP
LOGSTEP = np.log(6.4) / 27.0            # ... logarithmic above, 27 steps per factor 6.4


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz >= MIN_LOG_HZ, MIN_LOG_MEL + np.log(np.maximum(hz, MIN_LOG_HZ) / MIN_LOG_HZ) / LOGSTEP, hz / F_SP)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= MIN_LOG_MEL, MIN_LOG_HZ * np.exp(LOGSTEP * (mel - MIN_LOG_MEL)), F_SP * mel)


def slaney_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32: librosa.filters.mel(sr=, n_fft=, n_mels=) with its defaults
    (Slaney scale, "slaney" area normalisation), in the same operations, so the same floats."""
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(sr / 2 if fmax is None else fmax), n_mels + 2))
    ramps = np.subtract.outer(mel_hz, fft_hz)
    fdiff = np.diff(mel_hz)
    weights = np.zeros((n_mels, len(fft_hz)), dtype=np.float32)
    weights[:] = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]          # equal area per band
    return weights


class LogMel(nn.Module):
    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.n_fft, self.hop, self.power, self.scale = cfg.n_fft, cfg.hop_length, cfg.power, cfg.log_scale
        fb = slaney_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, frames) mel power, before compression."""
        spec = torch.stft(wave.float(), self.n_fft, hop_length=self.hop, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        mag = spec.abs().pow(self.power)
        return torch.matmul(self.mel_fb, mag)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.scale * self.mel(wave))
