"""`ctxtag embedding-features`: Chen et al.'s 128-bin, hop-512 log-mels of the first 30 s of every
catalogue track (new releases included: they are what the audio embeddings are for)."""

from __future__ import annotations

import pandas as pd

from ctxtag.audio import mel_set
from ctxtag.common.io import write_json
from ctxtag.config import Params


def run(params: Params) -> dict:
    p = params.paths
    catalogue = pd.read_csv(p.tracks, dtype=str)["track_id"].drop_duplicates().tolist()
    summary = mel_set.build(catalogue, p.tracks, p.audio_root, params.embedding_audio, p.mel_cache,
                            p.embedding_features)
    write_json(summary, p.report("embedding_features"))
    return summary
