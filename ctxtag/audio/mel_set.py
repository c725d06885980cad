"""A folder of log-mels on disk: ``mels.npy`` (n, n_mels, frames) float16, ``index.csv`` (track_id,
row) and ``skipped.csv`` (track_id, path, reason). The one writer and reader of that layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.audio.mel_cache import extract
from ctxtag.common.io import atomic_dir, audio_paths
from ctxtag.config import AudioConfig


@dataclass
class MelSet:
    mels: np.ndarray                 # memory-mapped when read with mmap
    row_of: pd.Series                # track_id -> row of mels

    @property
    def track_ids(self) -> np.ndarray:
        return self.row_of.index.to_numpy()


def index_csv(folder: Path) -> Path:
    return folder / "index.csv"


def read(folder: Path, mmap: bool = True) -> MelSet:
    mels = np.load(folder / "mels.npy", mmap_mode="r" if mmap else None)
    index = pd.read_csv(index_csv(folder), dtype={"track_id": str})
    return MelSet(mels, pd.Series(index["row"].to_numpy(), index=index["track_id"]))


def build(wanted: list[str], catalogue: Path, audio_root: Path, audio: AudioConfig, cache: Path,
          out: Path) -> dict:
    """Extract (or take from the cache) the log-mels of ``wanted`` into ``out``; a summary."""
    audio_of = audio_paths(catalogue)
    known = set(audio_of.index)
    have = [t for t in wanted if t in known]
    no_audio = [{"track_id": t, "path": "", "reason": "no audio_path in the catalogue"} for t in wanted if t not in known]
    result = extract(have, [audio_root / audio_of[t] for t in have], audio, cache)

    skipped = pd.DataFrame(no_audio + result.skipped, columns=["track_id", "path", "reason"])
    # the mels and their index are one thing: swapped in together, so no reader pairs a new
    # mels.npy with an old index.csv after a kill
    with atomic_dir(out) as staging:
        with (staging / "mels.npy").open("wb") as fh:
            np.save(fh, result.mels)
        pd.DataFrame({"track_id": result.track_ids, "row": np.arange(len(result.track_ids))}).to_csv(
            index_csv(staging), index=False)
        skipped.to_csv(staging / "skipped.csv", index=False)
    return {"tracks": len(wanted), "extracted": len(result.track_ids), "skipped": len(skipped),
            "cache_hits": result.cache_hits, "shape": list(result.mels.shape[1:]),
            "skipped_reasons": skipped["reason"].value_counts().to_dict()}
