"""Loading a trained tagger from its self-describing ``best.pt``."""

from __future__ import annotations

from pathlib import Path

import torch

from ctxtag.config import AudioConfig
from ctxtag.tagger.model import AudioTagger, ChoiCNN


def model_meta(contexts: tuple[str, ...], audio: AudioConfig, dropout: float, loss: str) -> dict:
    import dataclasses

    return {"contexts": list(contexts), "audio": dataclasses.asdict(audio), "dropout": dropout, "loss": loss}


def load_cnn(path: Path, device: str | torch.device = "cpu") -> tuple[ChoiCNN, dict]:
    ckpt = torch.load(path, map_location=device, weights_only=False)
    meta = ckpt.get("meta") or {}
    if "contexts" not in meta:
        raise ValueError(f"{path}: checkpoint has no metadata (contexts, audio); retrain with `ctxtag train`")
    audio = AudioConfig(**meta["audio"])
    cnn = ChoiCNN(audio.n_mels, audio.n_frames, len(meta["contexts"]), dropout=meta["dropout"])
    cnn.load_state_dict(ckpt["model"])
    return cnn.to(device).eval(), meta


def load_tagger(path: Path, device: str | torch.device = "cpu") -> tuple[AudioTagger, dict]:
    """Waveform-in tagger: the trained CNN behind the log-mel front-end."""
    cnn, meta = load_cnn(path, device)
    tagger = AudioTagger(AudioConfig(**meta["audio"]), len(meta["contexts"]), dropout=meta["dropout"])
    tagger.cnn = cnn
    return tagger.to(device).eval(), meta
