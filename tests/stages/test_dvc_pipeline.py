"""A real `dvc repro` of the pipeline on a small generated world, in a throwaway project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "synth": {"n_artists": 50, "n_users": 30, "n_context_playlists": 350, "n_noise_playlists": 40,
              "n_filtered_playlists": 12, "n_events": 3000, "clip_seconds": 2.0, "days": 14},
}


def _dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    shutil.copy(ROOT / "dvc.yaml", proj)
    (proj / "ctxtag").symlink_to(ROOT / "ctxtag")          # the stages' code deps
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"].update(SMALL["synth"])
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(proj, "init", "--no-scm", "-q")
    _dvc(proj, "repro")
    return proj


@pytest.mark.slow
def test_repro_builds_every_output(project):
    for rel in ("data/labelled/labels.csv", "data/labelled/counts.csv", "data/weights/weights.npz",
                "data/splits/split.csv", "data/quarantine/playlists.jsonl",
                "reports/plots/cooccurrence.png", "dvc.lock"):
        assert (project / rel).exists(), rel
    labels = json.loads((project / "reports/labels.json").read_text())
    assert labels["dropped_too_many_tracks"] > 0 and labels["playlists_kept"] > 0
    assert 0 < labels["vs_truth"]["label_recall"] < 1          # playlists miss some true labels
    split = json.loads((project / "reports/split.json").read_text())
    assert split["overlap"] == {"artists": 0, "albums": 0}
    ids = pd.read_csv(project / "data/splits/split.csv", dtype=str)
    lab = pd.read_csv(project / "data/labelled/labels.csv", dtype={"track_id": str})
    assert sorted(ids["track_id"]) == sorted(lab["track_id"])


@pytest.mark.slow
def test_repro_is_incremental(project):
    assert "Data and pipelines are up to date" in _dvc(project, "status")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["labels"]["min_playlists"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = _dvc(project, "repro")
    assert "Stage 'synth' didn't change, skipping" in out
    assert "Running stage 'label'" in out
    labels = json.loads((project / "reports/labels.json").read_text())
    assert labels["tracks_after_balancing"] > 0
