"""`ctxtag publish-features`: user snapshots from the lake, the tagger's track features and (once
`ctxtag embeddings` has run) the listening embeddings of tracks and users -> Feast's offline
parquet and registry in ``paths.feast`` (training's point-in-time joins read them). The snapshots
are computed on the data-plane engine (params.data_plane) straight from the lake's parquet into the
offline files: nothing grows with the events in pandas.

Nothing is materialised here: the online store that services read is the served one
(``paths.online``), which `ctxtag publish` fills from these files and the registry's champions —
a DVC stage's output must never put unpromoted model features in front of clients."""

from __future__ import annotations

import sys
import time

import pandas as pd

from ctxtag.common.io import read_matrix, read_split, write_json
from ctxtag.config import Params
from ctxtag.context.splits import held_out
from ctxtag.listening.engine import open_engine
from ctxtag.listening.history_embedding import fit_lake_projection
from ctxtag.listening.lake import lake_parts
from ctxtag.listening.snapshots import snapshot_files
from ctxtag.platform.feast_definitions import offline_file
from ctxtag.platform.feature_store import open_store, publish


def run(params: Params) -> dict:
    p = params.paths
    feast_dir = p.feast
    ids, y = read_matrix(p.labels_csv, params.contexts)
    labels = pd.DataFrame(y, index=pd.Index(ids, name="track_id"), columns=list(params.contexts))
    artists = pd.read_csv(p.tracks, dtype=str, usecols=["track_id", "artist_id"]).drop_duplicates("track_id").set_index("track_id")["artist_id"]
    start = time.perf_counter()
    engine = open_engine(params.data_plane)
    try:
        parts = lake_parts(p.lake)
        held = _held_out(engine, parts, params, artists)
        projection = fit_lake_projection(engine, parts, params.user_models.history_dim, params.seed, held)
        history, device_time = offline_file(feast_dir, "user_history"), offline_file(feast_dir, "user_device_time")
        snapshots = snapshot_files(engine, parts, labels, artists, params.contexts, params.logs.devices,
                                   params.logs.networks, projection, history, device_time)
    finally:
        engine.close()
    print(f"user snapshots: {snapshots['snapshots']} for {snapshots['users']} users in "
          f"{time.perf_counter() - start:.1f} s on {params.data_plane.engine}", file=sys.stderr)
    tracks = pd.read_parquet(p.track_features_parquet)
    emb = [p.track_embeddings_parquet, p.user_embeddings_parquet]
    embeddings = tuple(pd.read_parquet(f) for f in emb) if all(f.exists() for f in emb) else None
    store = open_store(feast_dir)
    stats = {**publish(store, params, feast_dir, history, device_time, tracks, embeddings, materialize=False),
             # the history embedding's fit left out what the cold splits hold out
             "history_fit_held_out": {"users": len(held[0]), "tracks": len(held[1])}}
    write_json(stats, p.report("publish_features"))
    return stats


def _held_out(engine, parts, params: Params, artists: pd.Series) -> tuple:
    """What the user models' cold splits will hold out (ctxtag.context.splits.held_out, the splits
    `ctxtag user-models` draws): the users of the labelled streams and the lake's tracks, classified
    by the same rules, so the history embedding is fitted without them."""
    engine.parquet("events", parts)
    d = engine.dialect
    labelled = engine.arrow(f"SELECT DISTINCT user_id FROM events WHERE context IN "
                            f"({', '.join(d.lit(c) for c in params.contexts)})").column("user_id")
    tracks = engine.arrow("SELECT DISTINCT track_id FROM events").column("track_id")
    return held_out(labelled.to_numpy(zero_copy_only=False), tracks.to_numpy(zero_copy_only=False),
                    params.user_models.splits, params.split, params.seed, read_split(params.paths.split_csv),
                    artists)
