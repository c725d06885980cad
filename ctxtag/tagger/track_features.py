"""Track features for Feast: the tagger's context probabilities and audio embedding per track."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ctxtag.tagger.model import ChoiCNN


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
