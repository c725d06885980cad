"""`ctxtag streams`: labelled streams from the lake, joined with point-in-time Feast user features
and the tracks' audio features -> data/streams/streams.parquet (the user-model training set)."""

from __future__ import annotations

import pandas as pd

from ctxtag.common.io import atomic_path, write_json
from ctxtag.config import Params
from ctxtag.context.streams import labelled, with_features
from ctxtag.listening.lake import read_lake
from ctxtag.platform.feature_store import open_store


def run(params: Params) -> dict:
    p = params.paths
    streams = labelled(read_lake(p.lake), params.contexts)
    tracks = pd.read_parquet(p.track_features_parquet)
    frame = with_features(open_store(p.feast, "sqlite"), streams, tracks)
    with atomic_path(p.streams_parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    stats = {"streams": len(frame), "users": int(frame["user_id"].nunique()),
             "tracks": int(frame["track_id"].nunique()),
             "without_history": int((~frame["has_history"]).sum()),   # a user's first day: no snapshot yet
             "without_audio": int((~frame["has_audio"]).sum()),
             "per_context": frame["context"].value_counts().sort_index().to_dict()}
    write_json(stats, p.report("streams"))
    return stats
