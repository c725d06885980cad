"""`ctxtag publish-features`: user snapshots from the lake, the tagger's track features and (once
`ctxtag embeddings` has run) the listening embeddings of tracks and users -> Feast offline parquet
+ online store."""

from __future__ import annotations

import pandas as pd

from ctxtag.common.io import read_matrix, write_json
from ctxtag.config import Params
from ctxtag.listening.history_embedding import fit_item_projection
from ctxtag.listening.lake import read_lake
from ctxtag.listening.snapshots import daily_snapshots
from ctxtag.platform.feature_store import open_store, publish


def run(params: Params, online: str = "sqlite", redis_url: str = "localhost:6379") -> dict:
    p = params.paths
    feast_dir = p.feast
    events = read_lake(p.lake)
    ids, y = read_matrix(p.labels_csv, params.contexts)
    labels = pd.DataFrame(y, index=pd.Index(ids, name="track_id"), columns=list(params.contexts))
    artists = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")["artist_id"]
    projection = fit_item_projection(events["user_id"], events["track_id"], params.user_models.history_dim,
                                     params.seed)
    history, device_time = daily_snapshots(events, labels, artists, params.contexts,
                                           params.logs.devices, params.logs.networks, projection)
    tracks = pd.read_parquet(p.track_features_parquet)
    emb = [p.track_embeddings_parquet, p.user_embeddings_parquet]
    embeddings = tuple(pd.read_parquet(f) for f in emb) if all(f.exists() for f in emb) else None
    store = open_store(feast_dir, online, redis_url=redis_url)
    stats = {"online_store": online, **publish(store, params, feast_dir, history, device_time, tracks, embeddings)}
    write_json(stats, p.report("publish_features"))
    return stats
