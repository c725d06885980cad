"""The audio auto-tagger of ICASSP 2020 §4.1 (after Choi et al. 2016), readable top to bottom.

    log-mel (1 x 96 x 646)
    BatchNorm on the input
    4 x [conv 3x3 'same' (32, 64, 128, 256 filters) -> ReLU -> max-pool 2x2]   -> 256 x 6 x 40
    flatten -> FC 256 -> ReLU -> dropout 0.3 -> FC 15 -> sigmoid

``forward`` returns logits (the sigmoid lives in ``predict_proba`` and, for training, inside the
loss as log-sigmoid terms, which is the same function computed stably).
"""

from __future__ import annotations

import torch
from torch import nn

from ctxtag.audio.melspec import LogMel
from ctxtag.config import AudioConfig


class ChoiCNN(nn.Module):
    def __init__(self, n_mels: int = 96, n_frames: int = 646, n_classes: int = 15,
                 channels: tuple[int, ...] = (32, 64, 128, 256), hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        blocks, c_in = [], 1
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size=3, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        h, w = n_mels, n_frames
        for _ in channels:
            h, w = h // 2, w // 2
        self.flat_dim = c_in * h * w
        self.fc = nn.Linear(self.flat_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (batch, n_mels, frames) -> the 256-d audio embedding (the hidden FC layer)."""
        x = self.input_bn(mel.unsqueeze(1))
        x = self.features(x)
        return torch.relu(self.fc(x.flatten(1)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (batch, n_mels, frames) -> logits (batch, n_classes)."""
        return self.head(self.dropout(self.embed(mel)))

    @torch.no_grad()
    def predict_proba(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(mel))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        lines = [f"{name:<22} {tuple(p.shape)!s:<22} {p.numel():>12,}" for name, p in self.named_parameters()]
        return "\n".join([*lines, f"{'total':<45} {self.num_parameters():>12,}"])


class AudioTagger(nn.Module):
    """Waveform in, context logits out: the log-mel front-end and the CNN in one module."""

    def __init__(self, audio: AudioConfig, n_classes: int, dropout: float = 0.3):
        super().__init__()
        self.frontend = LogMel(audio)
        self.cnn = ChoiCNN(audio.n_mels, audio.n_frames, n_classes, dropout=dropout)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.frontend(wave))
