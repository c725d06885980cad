"""Batch log-mel extraction with a content-addressed cache.

Each clip's mel is cached under the hash of the audio file's bytes, the front-end settings and the
front-end code (the source of ``decode`` and ``melspec``, so a changed front-end never serves stale
mels from the cache). Re-running after adding tracks (or re-running a DVC stage) only computes what
is new. A corrupt or silent file is reported with its reason and skipped; the rest go on.
Entries are written atomically, and an unreadable entry is recomputed, never served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ctxtag.audio import decode, melspec
from ctxtag.audio.decode import AudioError, load_clip
from ctxtag.audio.melspec import LogMel
from ctxtag.common.io import atomic_path, source_digest
from ctxtag.common.progress import progress
from ctxtag.config import AudioConfig

# the code between the audio bytes and a cached mel (this module's extraction included)
FRONTEND_MODULES = (decode, melspec, sys.modules[__name__])


@cache
def frontend_version() -> str:
    """A hash of the front-end's source: editing decode.py, melspec.py or this module changes every
    cache key."""
    return source_digest(FRONTEND_MODULES)


def config_key(cfg: AudioConfig) -> str:
    """The front-end settings and code version: one cache namespace per (settings, code)."""
    key = {"config": dataclasses.asdict(cfg), "frontend": frontend_version()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def content_key(path: Path, cfg_key: str) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"{h.hexdigest()[:32]}-{cfg_key}"


def _read_entry(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A cached mel, or None when there is none or it is unusable (written by a tool that was
    killed before atomic writes, or damaged on disk): it is then recomputed and replaced."""
    if not path.exists():
        return None
    try:
        mel = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        print(f"warning: {path}: unreadable mel cache entry ({exc}); recomputing it", file=sys.stderr)
        return None
    if mel.shape != shape or mel.dtype != np.float16:
        print(f"warning: {path}: mel cache entry of shape {mel.shape} {mel.dtype}; recomputing it", file=sys.stderr)
        return None
    return mel


@dataclass
class Extraction:
    track_ids: list[str]
    mels: np.ndarray                  # (n, n_mels, n_frames) float16
    skipped: list[dict]               # track_id, path, reason
    cache_hits: int


def extract(track_ids: list[str], paths: list[Path], cfg: AudioConfig, cache_dir: Path) -> Extraction:
    cache_dir.mkdir(parents=True, exist_ok=True)
    frontend = LogMel(cfg).eval()
    ckey = config_key(cfg)
    ok_ids, mels, skipped, hits = [], [], [], 0
    for tid, path in progress(list(zip(track_ids, paths, strict=True)), total=len(track_ids),
                              description="log-mel features"):
        try:
            if not path.exists():
                raise AudioError(path, "file not found")
            key = content_key(path, ckey)
            cached = cache_dir / f"{key}.npy"
            mel = _read_entry(cached, (cfg.n_mels, cfg.n_frames))
            if mel is not None:
                hits += 1
            else:
                clip = load_clip(path, cfg)
                with torch.no_grad():
                    mel = frontend(torch.from_numpy(clip)[None])[0].numpy().astype(np.float16)
                with atomic_path(cached) as tmp, tmp.open("wb") as fh:   # no half-written entries
                    np.save(fh, mel)
        except AudioError as exc:
            skipped.append({"track_id": tid, "path": str(path), "reason": exc.reason})
            continue
        ok_ids.append(tid)
        mels.append(mel)
    arr = np.stack(mels) if mels else np.zeros((0, cfg.n_mels, cfg.n_frames), dtype=np.float16)
    return Extraction(ok_ids, arr, skipped, hits)
