"""`ctxtag features`: 96 x 646 log-mels of every labelled track, cached by audio content."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.config import Params
from ctxtag.features import extract
from ctxtag.io import audio_paths, write_json


def run(params: Params) -> dict:
    paths = params.paths
    wanted = pd.read_csv(paths.labelled / "tracks.csv", dtype={"track_id": str})["track_id"].tolist()
    audio_of = audio_paths(paths.tracks)
    have = [t for t in wanted if t in audio_of.index]
    no_audio = [{"track_id": t, "path": "", "reason": "no audio_path in the catalogue"} for t in wanted if t not in set(have)]
    result = extract(have, [paths.audio_root / audio_of[t] for t in have], params.audio, paths.mel_cache)

    out = paths.features
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "mels.npy", result.mels)
    pd.DataFrame({"track_id": result.track_ids, "row": np.arange(len(result.track_ids))}).to_csv(out / "index.csv", index=False)
    skipped = pd.DataFrame(no_audio + result.skipped, columns=["track_id", "path", "reason"])
    skipped.to_csv(out / "skipped.csv", index=False)
    summary = {"tracks": len(wanted), "extracted": len(result.track_ids), "skipped": len(skipped),
               "cache_hits": result.cache_hits, "shape": list(result.mels.shape[1:]),
               "skipped_reasons": skipped["reason"].value_counts().to_dict()}
    write_json(summary, params.paths.reports / "features.json")
    return summary
