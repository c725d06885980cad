"""Shared fixtures: the real data under ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
from ctxtag.vocabulary import CONTEXTS  # noqa: E402  (one owner of the vocabulary)


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path} (../shared is only on developer and CI machines)")
    return path


@pytest.fixture
def contexts() -> tuple[str, ...]:
    return CONTEXTS


# --- a real DVC project on a small generated world, shared by the pipeline, registry and DAG tests
SMALL = {
    "synth": {"n_artists": 50, "n_users": 30, "n_context_playlists": 350, "n_noise_playlists": 40,
              "n_filtered_playlists": 12, "n_events": 3000, "clip_seconds": 4.0, "days": 14},
    # 3 s clips (65 frames) keep the CNN cheap; 4 s tracks are shorter than 30 + 3 s: cropped from 0
    "audio": {"duration_s": 3.0},
    "train": {"configs": ["none", "neg_ignore_zeros"], "max_epochs": 2},
    # Chen et al. on 4 s clips: 1 s and 2 s context durations, one epoch, a narrow CNN
    "embedding_audio": {"duration_s": 4.0},
    "embeddings": {"min_liked": 3, "min_disliked": 3, "durations": [1.0, 2.0], "best_duration": 2.0,
                   "epochs": 1, "eval_segments": 2, "user_epochs": 5, "cnn_channels": [4, 8, 8, 8, 8]},
}


def tool_env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)                     # the embedded default: ./mlruns.db
    return env


def run_tool(cwd: Path, tool: str, *args: str, ok: bool = True) -> str:
    """Run a console script of this venv in ``cwd``; with ok, a non-zero exit fails the test."""
    proc = subprocess.run([str(Path(sys.executable).parent / tool), *args], cwd=cwd, env=tool_env(),
                          capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout if ok else proc


def dvc(cwd: Path, *args: str) -> str:
    return run_tool(cwd, "dvc", *args)


@pytest.fixture(scope="session")
def dvc_project(tmp_path_factory) -> Path:
    """`dvc repro` of the whole pipeline, once per session. Tests that change it restore it."""
    proj = tmp_path_factory.mktemp("proj")
    shutil.copy(ROOT / "dvc.yaml", proj)
    shutil.copy(ROOT / ".dvcignore", proj)                 # bytecode in ctxtag/ is not a code change
    (proj / "ctxtag").symlink_to(ROOT / "ctxtag")          # the stages' code deps
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(proj, "init", "--no-scm", "-q")
    dvc(proj, "repro")
    return proj
