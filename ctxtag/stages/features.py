"""`ctxtag features`: 96 x 646 log-mels of every labelled track, cached by audio content."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.config import Params
from ctxtag.features import extract
from ctxtag.io import write_json
from ctxtag.quarantine import InputError


def run(params: Params) -> dict:
    paths = params.paths
    wanted = pd.read_csv(paths.labelled / "tracks.csv", dtype={"track_id": str})["track_id"].tolist()
    if paths.tracks is None or not paths.tracks.exists():
        raise InputError(paths.tracks or "paths.tracks", "a track catalogue with audio_path is needed for features")
    catalogue = pd.read_csv(paths.tracks, dtype={"track_id": str})
    if "audio_path" not in catalogue.columns:
        raise InputError(paths.tracks, "missing required column 'audio_path'")
    audio_of = catalogue.drop_duplicates("track_id").set_index("track_id")["audio_path"]
    have = [t for t in wanted if isinstance(audio_of.get(t), str)]
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
