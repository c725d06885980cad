"""The trained tagger at work: its one checkpoint loader, predictions for audio files, and the
per-track features (context probabilities + embedding) that Feast serves.

A checkpoint (``best.pt``) is self-describing: weights plus the contexts, front-end and dropout
they were trained with (``model_meta``), so nothing else is needed to load it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctxtag.audio.decode import AudioError, load_clip
from ctxtag.config import AudioConfig
from ctxtag.tagger.model import AudioTagger, ChoiCNN


def model_meta(contexts: tuple[str, ...], audio: AudioConfig, dropout: float, loss: str) -> dict:
    return {"contexts": list(contexts), "audio": dataclasses.asdict(audio), "dropout": dropout, "loss": loss}


def load_cnn(path: Path, device: str | torch.device = "cpu") -> tuple[ChoiCNN, dict]:
    """The one loader of a tagger checkpoint: state dict + plain metadata, so weights_only=True
    (nothing in a checkpoint can run code)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
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


def predict_files(model_path: Path, files: list[Path], top: int = 5) -> tuple[list[dict], list[dict]]:
    """(predictions, errors): each prediction has file and its top contexts with probabilities."""
    tagger, meta = load_tagger(model_path)
    audio = AudioConfig(**meta["audio"])
    out, errors = [], []
    for f in files:
        try:
            clip = load_clip(f, audio)
        except AudioError as exc:
            errors.append({"file": str(f), "error": exc.reason})
            continue
        with torch.no_grad():
            probs = torch.sigmoid(tagger(torch.from_numpy(clip)[None]))[0].numpy()
        order = np.argsort(-probs)[:top]
        out.append({"file": str(f), "contexts": [{"context": meta["contexts"][j], "probability": round(float(probs[j]), 4)}
                                                  for j in order]})
    return out, errors


@torch.no_grad()
def infer(model: ChoiCNN, mels: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, m), embeddings (n, 256)) for stored float16 mels, batch by batch."""
    model.eval()
    probs, embs = [], []
    for start in range(0, len(mels), batch_size):
        mel = torch.from_numpy(np.asarray(mels[start:start + batch_size], dtype=np.float32))
        emb = model.embed(mel)
        embs.append(emb.numpy())
        probs.append(torch.sigmoid(model.head(emb)).numpy())
    m, d = model.head.out_features, model.fc.out_features
    return (np.concatenate(probs) if probs else np.zeros((0, m), np.float32),
            np.concatenate(embs) if embs else np.zeros((0, d), np.float32))


def track_frame(track_ids: list[str], probs: np.ndarray, embs: np.ndarray, model_name: str,
                timestamp: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({
        "track_id": track_ids,
        "event_timestamp": timestamp,
        "context_probs": list(probs.astype(np.float32)),
        "audio_embedding": list(embs.astype(np.float32)),
        "tagger": model_name,
    })
