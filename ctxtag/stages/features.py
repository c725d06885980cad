"""`ctxtag features`: 96 x 646 log-mels of every labelled track, cached by audio content."""

from __future__ import annotations

import pandas as pd

from ctxtag.audio import mel_set
from ctxtag.common.io import write_json
from ctxtag.config import Params


def run(params: Params) -> dict:
    p = params.paths
    wanted = pd.read_csv(p.labelled_tracks_csv, dtype={"track_id": str})["track_id"].tolist()
    summary = mel_set.build(wanted, p.tracks, p.audio_root, params.audio, p.mel_cache, p.features)
    write_json(summary, p.report("features"))
    return summary
