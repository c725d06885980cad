"""What the promotion gate measures: a registered version's per-context ROC-AUC, scored now on the
same test data for every version (not from stored metrics, which may come from another split or
code version). The tagger on the test tracks; the context model on a seeded sample of test
streams of the serving split type, fed as it is served."""

from __future__ import annotations

import numpy as np

from ctxtag.config import Params
from ctxtag.context.features import user_feature_columns


def tagger_test_auc(params: Params, version: str) -> np.ndarray:
    """Per-context ROC-AUC of registered tagger ``version`` on the test split: its checkpoint, as
    served (checked against its sha256, loaded with weights_only=True)."""
    from ctxtag.common.training import pick_device
    from ctxtag.platform.registry import champion_files
    from ctxtag.tagger.dataset import load_splits
    from ctxtag.tagger.inference import load_cnn
    from ctxtag.tagger.metrics import per_context
    from ctxtag.tagger.train import predict

    p = params.paths
    device = pick_device(params.train.device)
    files, _ = champion_files(params, "tagger", version=version)
    model, _ = load_cnn(files["tagger"], device)
    data = load_splits(p, params.contexts, params.train.loss)
    probs, _ = predict(model, data.datasets["test"], params.train, device)
    return per_context(data.labels["test"], probs)["roc_auc"]


def embeddings_auc(params: Params, version: str) -> np.ndarray:
    """[mean per-user ROC-AUC] of registered embeddings ``version`` on the cold-start gate pairs
    (`ctxtag embeddings`' liked / disliked new tracks, paths.gate_pairs_parquet): the cosine of the
    version's UE and AE, as cold-start recommendations rank."""
    import pandas as pd

    from ctxtag.embeddings.evaluation import per_user_auc
    from ctxtag.platform.registry import champion_files

    files, _ = champion_files(params, "embeddings", version=version)
    pairs = pd.read_parquet(params.paths.gate_pairs_parquet)
    vectors = {}
    for kind in ("user", "track"):
        t = pd.read_parquet(files[f"{kind}_embeddings"], columns=[f"{kind}_id", "listening_embedding"])
        m = np.stack(t["listening_embedding"].to_numpy()).astype(np.float64)
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        rows = pd.Index(t[f"{kind}_id"].astype(str)).get_indexer(pairs[f"{kind}_id"].astype(str))
        vectors[kind] = np.where((rows >= 0)[:, None], m[np.maximum(rows, 0)], np.nan)
    score = np.sum(vectors["user"] * vectors["track"], axis=1)
    known = np.isfinite(score)
    return np.array([per_user_auc(pairs["liked"].to_numpy()[known], score[known], pairs["user_id"].to_numpy()[known])])


def context_model_auc(params: Params, version: str) -> np.ndarray:
    """Per-context ROC-AUC of registered context model ``version`` (its pyfunc) on test streams of the serving
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
    probs = mlflow.pyfunc.load_model(f"models:/{params.registry.context_model_name}/{version}").predict(frame).to_numpy()
    y = np.eye(len(params.contexts), dtype=np.uint8)[targets(test, params.contexts)]
    return per_context(y, probs)["roc_auc"]
