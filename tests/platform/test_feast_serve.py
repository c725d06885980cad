"""Other services read features over HTTP: a real `feast serve` on localhost."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from ctxtag.common.io import stop_process_group
from ctxtag.config import Params
from ctxtag.listening.history_embedding import fit_item_projection
from ctxtag.listening.snapshots import daily_snapshots
from ctxtag.platform.feature_store import open_store, publish
from ctxtag.tagger.inference import track_frame
from tests.conftest import closed_port, serve_feast

PARAMS = Params()


@pytest.mark.slow
def test_feast_serve_answers_online_feature_requests(tmp_path):
    rng = np.random.default_rng(0)
    events = pd.DataFrame({
        "user_id": rng.choice(["u1", "u2"], 200), "track_id": "t1",
        "event_timestamp": pd.Timestamp("2026-01-05T00:00:00Z") + pd.to_timedelta(rng.integers(0, 5 * 86400, 200), unit="s"),
        "utc_offset_min": pd.array([0] * 200, dtype="Int64"),
        "device": rng.choice(list(PARAMS.logs.devices), 200), "network": "wifi", "context": None})
    labels = pd.DataFrame([[1] + [0] * 14], columns=list(PARAMS.contexts), index=pd.Index(["t1"], name="track_id"))
    history, device_time = daily_snapshots(events, labels, pd.Series({"t1": "x"}), PARAMS.contexts,
                                           PARAMS.logs.devices, PARAMS.logs.networks,
                                           fit_item_projection(events["user_id"], events["track_id"],
                                                               PARAMS.user_models.history_dim, 0))
    tracks = track_frame(["t1"], np.full((1, 15), 0.5, np.float32), np.zeros((1, 256), np.float32), "cnn-test",
                         pd.Timestamp("2026-01-10T00:00:00Z"))
    project = f"ctxtagserve{uuid.uuid4().hex[:6]}"
    publish(open_store(tmp_path, "sqlite", project=project), PARAMS, tmp_path, history, device_time, tracks)
    # the repo the server reads: the registry and online store the pipeline just wrote
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump({
        "project": project, "provider": "local", "registry": str(tmp_path / "registry-sqlite.db"),
        "online_store": {"type": "sqlite", "path": str(tmp_path / "online.db")},
        "offline_store": {"type": "file"}, "entity_key_serialization_version": 3}))
    port = closed_port()
    feast = Path(sys.executable).parent / "feast"
    server = serve_feast(feast, tmp_path, port, os.environ.copy(), timeout_s=90)
    try:
        resp = httpx.post(f"http://127.0.0.1:{port}/get-online-features", timeout=10,
                          json={"feature_service": "situational_model", "entities": {"user_id": ["u1", "ghost"]}})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        names = body["metadata"]["feature_names"]
        n_streams = body["results"][names.index("n_streams")]["values"]
        expected = int(history[history["user_id"] == "u1"]["n_streams"].max())
        assert n_streams == [expected, None]
        bad = httpx.post(f"http://127.0.0.1:{port}/get-online-features", timeout=10,
                         json={"feature_service": "no_such_service", "entities": {"user_id": ["u1"]}})
        assert 400 <= bad.status_code < 600 and bad.status_code != 200
    finally:
        stop_process_group(server)
