"""The trained stream models on disk (data/user_models/<split kind>/<model>.{pt,npz}), each
kind with its one loader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ctxtag.common.io import atomic_path, write_text
from ctxtag.config import UserModelConfig
from ctxtag.context.model import ContextTagger
from ctxtag.context.situational import Forest


def model_path(folder: Path, name: str) -> Path:
    """Where model ``name`` of a split kind's folder lies: the GBT as a forest of arrays (.npz), the
    rest as .pt."""
    return folder / (f"{name}.npz" if name == "situational" else f"{name}.pt")


def save(models: dict, folder: Path, contexts: tuple[str, ...], cfg: UserModelConfig) -> None:
    """``models``: name -> (model, history); neural models as state dicts, the GBT as its arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (model, history) in models.items():
        if isinstance(model, torch.nn.Module):
            with atomic_path(model_path(folder, name)) as tmp:
                torch.save({"state_dict": model.state_dict(), "inputs": model.inputs,
                            "dims": {k: model.branches[k].fc.in_features for k in model.inputs},
                            "contexts": list(contexts), "config": dataclasses.asdict(cfg),
                            "history": history}, tmp)
        else:
            model.save(model_path(folder, name))
        write_text(json.dumps(history), folder / f"{name}.history.json")


def load_tagger(path: Path) -> ContextTagger:
    """A user-aware or joint model (state dict, input blocks and their sizes); plain data only, so
    it loads with weights_only=True."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = UserModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()})
    model = ContextTagger(ckpt["dims"], len(ckpt["contexts"]), cfg.audio_hidden, cfg.user_hidden,
                          cfg.fused_hidden, cfg.dropout)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_situational(path: Path) -> Forest:
    """The situational GBT's flattened forest (plain arrays, no pickle)."""
    return Forest.load(path)
