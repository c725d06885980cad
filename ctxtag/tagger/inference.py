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

from ctxtag.audio.decode import AudioError, load_clip, load_windows
from ctxtag.config import AudioConfig, TaggingConfig
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


@torch.no_grad()
def clip_probabilities(tagger: AudioTagger, clip: np.ndarray) -> np.ndarray:
    """One cropped waveform (load_clip / crop) through the waveform-in tagger: its (m,) context
    probabilities."""
    return torch.sigmoid(tagger(torch.from_numpy(clip)[None]))[0].numpy()


@torch.no_grad()
def track_probabilities(tagger: AudioTagger, wins: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """A whole track's (m,) context probabilities: the mean of its windows' (decode.windows),
    ``batch_size`` windows through the network at a time."""
    probs = [torch.sigmoid(tagger(torch.from_numpy(np.ascontiguousarray(wins[i:i + batch_size]))))
             for i in range(0, len(wins), batch_size)]
    return torch.cat(probs).mean(0).numpy()


def predict_files(model_path: Path, files: list[Path], top: int = 5,
                  track: TaggingConfig | None = None) -> tuple[list[dict], list[dict]]:
    """(predictions, errors): each prediction has file and its top contexts with probabilities:
    of the paper's one crop, or with ``track`` of the whole track (then also its window count)."""
    tagger, meta = load_tagger(model_path)
    audio = AudioConfig(**meta["audio"])
    out, errors = [], []
    for f in files:
        try:
            if track is None:
                probs, extra = clip_probabilities(tagger, load_clip(f, audio)), {}
            else:
                wins = load_windows(f, audio, track.max_windows, track.max_track_s)
                probs, extra = track_probabilities(tagger, wins), {"windows": len(wins)}
        except AudioError as exc:
            errors.append({"file": str(f), "error": exc.reason})
            continue
        order = np.argsort(-probs)[:top]
        out.append({"file": str(f), **extra,
                    "contexts": [{"context": meta["contexts"][j], "probability": round(float(probs[j]), 4)}
                                 for j in order]})
    return out, errors


def sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """torch.sigmoid with every element on the vectorised path. ATen computes the tail of a tensor
    (its size mod 16 on AVX2, mod 32 on AVX-512) with the scalar function, which can differ in the
    last bit, so a track's probability would depend on where its row falls in the batch; padded to
    a multiple of 64 elements, no element is in the tail (a full batch of 32 x 15 never had one, so
    its values are unchanged)."""
    flat = logits.reshape(-1)
    n = flat.numel()
    return torch.sigmoid(torch.nn.functional.pad(flat, (0, -n % 64)))[:n].view_as(logits)


@torch.no_grad()
def infer(model: ChoiCNN, mels: np.ndarray, batch_size: int = 32, pad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, m), embeddings (n, 256)) for stored float16 mels, batch by batch, on the
    model's device (the float16 batch is sent as is and widened there: the same float32 values).

    pad: the last, short batch is padded with zeros to ``batch_size`` (their outputs dropped), so
    every mel goes through the network in a batch of the same size. On the CPU a batch of 7 and one
    of 32 can differ in the last bit (the kernels block by batch size; eval-mode BatchNorm never
    mixes samples), so padding makes a track's floats independent of how the catalogue was split
    (with ``sigmoid`` above, which does the same for the probabilities). Take a batch size that is
    a multiple of 16: with an odd one (5) a row's floats also depended on its place in the batch.
    """
    model.eval()
    device = next(model.parameters()).device
    probs, embs = [], []
    for start in range(0, len(mels), batch_size):
        batch = np.ascontiguousarray(mels[start:start + batch_size])
        n = len(batch)
        if pad and n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
        mel = torch.from_numpy(batch).to(device, non_blocking=True).float()
        emb = model.embed(mel)
        prob = sigmoid(model.head(emb))
        embs.append(emb[:n].cpu().numpy())
        probs.append(prob[:n].cpu().numpy())
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
