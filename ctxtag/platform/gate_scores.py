"""What the promotion gate measures: a registered version's per-context ROC-AUC, scored now on the
same test data for every version (not from stored metrics, which may come from another split or
code version). The tagger on the test tracks; the context model on a seeded sample of test
streams of the serving split type, fed as it is served."""

from __future__ import annotations

import numpy as np

from ctxtag.config import Params
from ctxtag.context.features import user_feature_columns


def tagger_test_auc(params: Params, uri: str) -> np.ndarray:
    """Per-context ROC-AUC of the model at ``uri`` on the test split."""
    import mlflow

    from ctxtag.common.training import pick_device
    from ctxtag.tagger.dataset import load_splits
    from ctxtag.tagger.metrics import per_context
    from ctxtag.tagger.train import predict

    p = params.paths
    device = pick_device(params.train.device)
    model = mlflow.pytorch.load_model(uri, map_location=device)
    data = load_splits(p, params.contexts, params.train.loss)
    probs, _ = predict(model, data.datasets["test"], params.train, device)
    return per_context(data.labels["test"], probs)["roc_auc"]


def context_model_auc(params: Params, uri: str) -> np.ndarray:
    """Per-context ROC-AUC of the pyfunc context model at ``uri`` on test streams of the serving
    split type (a seeded sample of ``registry.context_gate_streams``): audio files, the user's
    features as of the stream, device, network and local time, as the model is served."""
    from datetime import timedelta, timezone

    import mlflow
    import pandas as pd

    from ctxtag.common.io import read_split
    from ctxtag.context.features import targets
    from ctxtag.context.splits import assign
    from ctxtag.tagger.metrics import per_context

    p = params.paths
    streams = pd.read_parquet(p.streams_parquet)
    tracks = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")
    track_split = read_split(p.split_csv)
    split = assign(streams, params.serving.split, params.split, params.seed, track_split, tracks["artist_id"])
    test = streams[split == "test"]
    test = test.sample(n=min(len(test), params.registry.context_gate_streams), random_state=params.seed)
    user_cols = [c for c in user_feature_columns(test) if c != "history_embedding"]
    frame = test[user_cols + ["device", "network", "age", "gender"]].reset_index(drop=True)
    frame["history_embedding"] = [None if e is None else [float(v) for v in e] for e in test["history_embedding"]]
    # as the catalogue names them: relative to the media root the loaded model reads under
    frame["audio_path"] = tracks["audio_path"].reindex(test["track_id"]).astype(str).to_list()
    offsets = test["utc_offset_min"].astype("float64").fillna(0).to_numpy()
    frame["timestamp"] = [t.tz_convert(timezone(timedelta(minutes=o))).isoformat()
                          for t, o in zip(test["event_timestamp"], offsets, strict=True)]
    probs = mlflow.pyfunc.load_model(uri).predict(frame).to_numpy()
    y = np.eye(len(params.contexts), dtype=np.uint8)[targets(test, params.contexts)]
    return per_context(y, probs)["roc_auc"]
