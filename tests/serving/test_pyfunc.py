"""The registered pyfunc context model, loaded back from the MLflow registry by alias."""

from __future__ import annotations

import dataclasses
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest

from ctxtag.config import load_params
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.registry import audit_log, register_context_model
from ctxtag.tagger.inference import predict_files


@pytest.mark.slow
def test_context_model_routes_rows_by_what_they_carry(dvc_project):
    params = load_params(dvc_project / "params.yaml")
    name = f"context-test-{uuid.uuid4().hex[:6]}"
    params = dataclasses.replace(params, registry=dataclasses.replace(params.registry, context_model_name=name))
    with in_project(dvc_project):
        got = register_context_model(params, why="pyfunc test")
        model = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
        client = mlflow.MlflowClient()
        assert audit_log(client, name)[-1]["action"] == "register"
        again = register_context_model(params)                   # same models: no new version
        promoted = promote(params, family="context", why="first context champion")
    assert got["version"] == "1" and got["new_version"]
    assert again["version"] == "1" and not again["new_version"]
    # the gate scored the pyfunc on test streams (audio files + user features + device/time)
    assert promoted["promoted"] and 0.5 < promoted["gate"]["challenger_macro_auc"] <= 1
    schema = {i.name: i.required for i in model.metadata.get_input_schema().inputs}
    assert {"mel", "audio_path", "n_streams", "device", "timestamp"} <= set(schema) and not any(schema.values())

    streams = pd.read_parquet(dvc_project / "data/streams/streams.parquet")
    row = streams[streams["has_history"]].iloc[0]
    clip = sorted((dvc_project / "data/raw/audio").glob("*.flac"))[0]
    user = {c: row[c] for c in streams.columns if c.startswith(("ctx_share_", "device_share_", "network_share_"))
            or c in ("n_streams", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos")}
    emb = list(map(float, row["history_embedding"]))
    frame = pd.DataFrame([
        {"audio_path": str(clip)},
        {"audio_path": str(clip), **user},
        {"audio_path": str(clip), **user, "device": "car", "network": "cellular",
         "timestamp": "2026-01-07T08:15:00+01:00"},
        {"audio_path": str(clip), **user, "device": "speaker", "network": "wifi",
         "timestamp": "2026-01-10T23:50:00+01:00"},
    ])
    frame["history_embedding"] = [None, emb, emb, emb]
    out = model.predict(frame)
    assert list(out.columns) == list(params.contexts)
    # audio alone: the tagger's own multi-label probabilities, as `ctxtag predict` gives them
    preds, _ = predict_files(dvc_project / params.paths.models / params.train.loss / "best.pt", [clip], top=15)
    want = {c["context"]: c["probability"] for c in preds[0]["contexts"]}
    np.testing.assert_allclose([out.loc[0, c] for c in want], list(want.values()), atol=1e-3)
    # with a user: single-label distributions; the situation changes the answer
    np.testing.assert_allclose(out.iloc[1:].sum(axis=1), 1.0, atol=1e-4)
    assert not np.allclose(out.iloc[2], out.iloc[3]) and not np.allclose(out.iloc[1], out.iloc[2])
    # request data never names an arbitrary local file: only what lies under the media root
    for outside in ("/etc/hostname", "../../../../etc/hostname", str(dvc_project / "params.yaml")):
        with pytest.raises(Exception, match="outside the media root"):
            model.predict(pd.DataFrame([{"audio_path": outside}]))
    # relative to the root works as the absolute path does
    relative = model.predict(pd.DataFrame([{"audio_path": str(clip.relative_to(dvc_project / "data/raw"))}]))
    np.testing.assert_allclose(relative.iloc[0], out.iloc[0], atol=1e-6)
