"""`ctxtag track-features` as the CLI and the DAG run it: every partition then combine in one
process, or one partition ("k/N") and the combine step on their own (a fan-out over workers)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctxtag.cli import main
from ctxtag.common import io
from ctxtag.config import ConfigError, load_params
from ctxtag.stages import track_features as stage
from ctxtag.tagger import batch
from tests.tagger.test_batch import N_TRACKS, make_world


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(io, "_SWEPT", set())        # a fresh folder under the same relative name
    return make_world(tmp_path)


def test_cli_runs_every_partition_and_writes_the_file_and_report(project, capsys):
    assert main(["track-features"]) == 0
    params = load_params("params.yaml")
    n = batch.BatchConfig().partitions                           # params.track_features absent: defaults
    frame = pd.read_parquet(params.paths.track_features_parquet)
    catalogue = pd.read_csv(params.paths.tracks, dtype=str)["track_id"].tolist()
    assert frame["track_id"].tolist() == [t for t in catalogue if t not in ("corrupt", "missing")]
    assert frame["tagger"].eq("cnn-none").all() and frame["event_timestamp"].nunique() == 1
    assert np.stack(frame["context_probs"]).shape == (N_TRACKS, 15)
    assert np.stack(frame["audio_embedding"]).shape == (N_TRACKS, 256)
    report = json.loads(params.paths.report("track_features").read_text())
    assert report["tracks"] == N_TRACKS and report["skipped"] == 2 and report["embedding_dim"] == 256
    assert report["partitions"] == n and report["partitions_computed"] == n
    assert sorted(p.name for p in batch.parts_dir(params).iterdir()) == sorted(
        f"part-{k}-of-{n}.parquet" for k in range(n))
    written = params.paths.track_features_parquet.stat().st_mtime_ns
    assert main(["track-features"]) == 0                         # a rerun: every partition reused,
    assert params.paths.track_features_parquet.stat().st_mtime_ns == written     # nothing rewritten
    assert json.loads(params.paths.report("track_features").read_text()) == report


def test_partitions_run_one_by_one_then_combined_equal_the_one_process_run(project):
    params = load_params("params.yaml")
    n = batch.BatchConfig().partitions
    with pytest.raises(ConfigError, match="not 3"):
        stage.run(params, partition="1/3")                       # N must be the configured one
    with pytest.raises(ConfigError, match="k/N"):
        stage.run(params, partition="one")
    results = [stage.run(params, partition=f"{k}/{n}") for k in batch.plan_partitions(params)]
    assert sum(r["tracks"] for r in results) == N_TRACKS and not any(r["reused"] for r in results)
    assert stage.run(params, partition=f"0/{n}")["reused"]
    stats = stage.run(params, combine_only=True)
    assert stats["tracks"] == N_TRACKS and stats["partitions_computed"] is None     # no run results given
    fanned_out = pd.read_parquet(params.paths.track_features_parquet)
    stage.run(params)
    one_process = pd.read_parquet(params.paths.track_features_parquet)
    assert fanned_out["track_id"].tolist() == one_process["track_id"].tolist()
    for column in ("context_probs", "audio_embedding"):
        np.testing.assert_array_equal(np.stack(fanned_out[column]), np.stack(one_process[column]))


def test_combine_before_the_partitions_refuses_and_writes_nothing(project):
    params = load_params("params.yaml")
    stage.run(params, partition=f"0/{batch.BatchConfig().partitions}")
    with pytest.raises(batch.PartitionsNotReady):
        stage.run(params, combine_only=True)
    assert not params.paths.track_features_parquet.exists()
