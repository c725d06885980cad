"""The trained branches of Chen et al. on disk, each with its one loader.

Checkpoints hold state dicts and plain metadata only, so they load with
``torch.load(weights_only=True)``: nothing in a checkpoint can run code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import torch

from ctxtag.common.io import atomic_path
from ctxtag.config import AudioConfig, EmbeddingConfig
from ctxtag.embeddings.data import Vocab
from ctxtag.embeddings.model import AudioCNN, UserBranch


def frames(duration_s: float, audio: AudioConfig) -> int:
    """Mel frames of a context duration."""
    return int(round(duration_s * audio.sample_rate / audio.hop_length))


def audio_branch_path(folder: Path, model: str, duration_s: float) -> Path:
    return folder / "audio" / f"{model}_{duration_s:g}s.pt"


def save_audio_branch(cnn: AudioCNN, model: str, duration_s: float, history: list[dict], cfg: EmbeddingConfig,
                      audio: AudioConfig, folder: Path) -> Path:
    path = audio_branch_path(folder, model, duration_s)
    with atomic_path(path) as tmp:
        torch.save({"cnn": cnn.state_dict(), "model": model, "duration_s": duration_s,
                    "frames": frames(duration_s, audio), "config": dataclasses.asdict(cfg),
                    "audio": dataclasses.asdict(audio), "history": history}, tmp)
    return path


def load_audio_branch(path: Path, device: str | torch.device = "cpu") -> tuple[AudioCNN, dict]:
    """(the audio CNN in eval mode, its metadata: model, duration_s, frames, config, audio, history)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = ckpt["config"]
    cnn = AudioCNN(ckpt["audio"]["n_mels"], cfg["dim"], tuple(cfg["cnn_channels"]))
    cnn.load_state_dict(ckpt["cnn"])
    return cnn.to(device).eval(), {k: v for k, v in ckpt.items() if k != "cnn"}


def save_user_branch(model: UserBranch, vocab: Vocab, history: list[dict], cfg: EmbeddingConfig, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "tracks": list(vocab.tracks), "albums": list(vocab.albums),
                    "artists": list(vocab.artists), "config": dataclasses.asdict(cfg), "history": history}, tmp)


def load_user_branch(path: Path, catalogue: pd.DataFrame,
                     device: str | torch.device = "cpu") -> tuple[UserBranch, Vocab, dict]:
    """(the user branch in eval mode, its vocabulary rebuilt against ``catalogue``, its metadata)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = ckpt["config"]
    vocab = Vocab.build(ckpt["tracks"], catalogue)
    if list(vocab.albums) != ckpt["albums"] or list(vocab.artists) != ckpt["artists"]:
        raise ValueError(f"{path}: the catalogue's albums/artists differ from the ones the branch was trained on")
    model = UserBranch(len(vocab.tracks), len(vocab.albums), len(vocab.artists), dim=cfg["dim"],
                       hidden=tuple(cfg["user_hidden"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), vocab, {"config": cfg, "history": ckpt["history"]}
