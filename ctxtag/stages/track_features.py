"""`ctxtag track-features`: the trained tagger's context probabilities and embedding per track.

Covers the whole catalogue, not only the labelled tracks the tagger was trained on; mels come
through the same content-hash cache as `ctxtag features`, so the labelled ones are not recomputed
and a growing catalogue never retrains the models.
"""

from __future__ import annotations

import pandas as pd

from ctxtag.audio.mel_cache import extract
from ctxtag.common.io import atomic_path, audio_paths, write_json
from ctxtag.config import Params
from ctxtag.tagger.inference import infer, load_cnn, track_frame


def run(params: Params) -> dict:
    p = params.paths
    model, meta = load_cnn(p.checkpoint(params.train.loss))
    audio_of = audio_paths(p.tracks)
    mels = extract(audio_of.index.tolist(), [p.audio_root / a for a in audio_of], params.audio, p.mel_cache)
    probs, embs = infer(model, mels.mels)
    frame = track_frame(mels.track_ids, probs, embs, f"cnn-{meta['loss']}", pd.Timestamp.now(tz="UTC").floor("s"))
    with atomic_path(p.track_features_parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    stats = {"tracks": len(frame), "skipped": len(mels.skipped), "mel_cache_hits": mels.cache_hits,
             "tagger": f"cnn-{meta['loss']}", "embedding_dim": int(embs.shape[1]),
             "mean_context_probability": float(probs.mean()) if len(probs) else None}
    write_json(stats, p.report("track_features"))
    return stats
