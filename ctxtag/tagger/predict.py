"""Top contexts for audio files: what `ctxtag predict AUDIO...` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ctxtag.audio.decode import AudioError, load_clip
from ctxtag.config import AudioConfig
from ctxtag.tagger.checkpoints import load_tagger


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
