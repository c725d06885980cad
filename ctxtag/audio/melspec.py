"""Log-mel front-end in plain torch, so the same module runs on CPU and GPU inside the model.

power spectrogram (torch.stft, Hann window, centred with zero padding as librosa >= 0.10) ->
librosa's Slaney mel filterbank (a buffer) -> log(1 + 100 x). For the paper's settings
(22,050 Hz, n_fft 1024, hop 1024, 96 bands) a 30 s clip gives 96 x 646.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctxtag.config import AudioConfig


class LogMel(nn.Module):
    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        import librosa

        self.n_fft, self.hop, self.power, self.scale = cfg.n_fft, cfg.hop_length, cfg.power, cfg.log_scale
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
        self.register_buffer("mel_fb", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_mels, frames) mel power, before compression."""
        spec = torch.stft(wave.float(), self.n_fft, hop_length=self.hop, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        mag = spec.abs().pow(self.power)
        return torch.matmul(self.mel_fb, mag)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.scale * self.mel(wave))
