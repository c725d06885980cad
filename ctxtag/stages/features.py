"""`ctxtag features`: 96 x 646 log-mels of every labelled track, cached by audio content.
`ctxtag embedding-features`: Chen et al.'s 128-bin, hop-512 log-mels of the first 30 s of every
catalogue track (new releases included: they are what the audio embeddings are for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.audio.mel_cache import extract
from ctxtag.common.io import audio_paths, write_json
from ctxtag.config import AudioConfig, Params


def write_features(wanted: list[str], params: Params, audio: AudioConfig, out: Path, report: str) -> dict:
    """Extract (or take from the cache) the log-mels of ``wanted`` into out/{mels.npy, index.csv, skipped.csv}."""
    paths = params.paths
    audio_of = audio_paths(paths.tracks)
    have = [t for t in wanted if t in audio_of.index]
    no_audio = [{"track_id": t, "path": "", "reason": "no audio_path in the catalogue"} for t in wanted if t not in set(have)]
    result = extract(have, [paths.audio_root / audio_of[t] for t in have], audio, paths.mel_cache)

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "mels.npy", result.mels)
    pd.DataFrame({"track_id": result.track_ids, "row": np.arange(len(result.track_ids))}).to_csv(out / "index.csv", index=False)
    skipped = pd.DataFrame(no_audio + result.skipped, columns=["track_id", "path", "reason"])
    skipped.to_csv(out / "skipped.csv", index=False)
    summary = {"tracks": len(wanted), "extracted": len(result.track_ids), "skipped": len(skipped),
               "cache_hits": result.cache_hits, "shape": list(result.mels.shape[1:]),
               "skipped_reasons": skipped["reason"].value_counts().to_dict()}
    write_json(summary, paths.reports / report)
    return summary


def run(params: Params) -> dict:
    wanted = pd.read_csv(params.paths.labelled / "tracks.csv", dtype={"track_id": str})["track_id"].tolist()
    return write_features(wanted, params, params.audio, params.paths.features, "features.json")


def run_embedding(params: Params) -> dict:
    catalogue = pd.read_csv(params.paths.tracks, dtype=str)["track_id"].drop_duplicates().tolist()
    return write_features(catalogue, params, params.embedding_audio, params.paths.embedding_features,
                          "embedding_features.json")
