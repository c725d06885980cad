"""The registry's @champion wherever a tagger answers outside the HTTP API: `ctxtag predict` (text
and JSON) and the Python API (ctxtag.tag, ctxtag.contexts_for), on the small pipeline's outputs
with a real MLflow registry and Feast online store."""

from __future__ import annotations

import json
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest
import yaml

import ctxtag
from ctxtag.config import load_params
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import promote
from ctxtag.platform.registry import champion_checkpoint, champion_files, register
from tests.conftest import run_tool


@pytest.fixture(scope="module")
def champion(dvc_project, context_champion):
    """A params file naming a registry model of this module only, its tagger registered and
    promoted: (project, params file name, "name/1")."""
    name = f"library-test-{uuid.uuid4().hex[:6]}"
    raw = yaml.safe_load((dvc_project / "params.yaml").read_text())
    raw["registry"]["model_name"] = name
    raw["registry"]["context_model_name"] = context_champion
    params_file = dvc_project / f"params-{name}.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    params = load_params(params_file)
    with in_project(dvc_project):
        register(params)
        promote(params, why="library test")
    yield dvc_project, params_file.name, f"{name}/1"
    params_file.unlink()


def _clip(project):
    return sorted((project / "data/raw/audio").glob("*.flac"))[0]


@pytest.mark.slow
def test_predict_json_and_tag_answer_with_the_champion(champion):
    project, params_file, version = champion
    clip = _clip(project)
    out = json.loads(run_tool(project, "ctxtag", "--params", params_file, "predict", str(clip), "--json",
                              "--top", "15"))
    assert out["model"] == version and out["errors"] == []
    (pred,) = out["predictions"]
    from_cli = {c["context"]: c["probability"] for c in pred["contexts"]}

    got = ctxtag.tag(clip, project=project, params_file=params_file)
    assert ctxtag.tagger_version(project, params_file) == version
    assert list(got) == sorted(got, key=got.get, reverse=True) and set(got) == set(from_cli)
    assert all(abs(got[c] - from_cli[c]) < 1e-4 for c in got)           # the same model, the same crop
    assert list(ctxtag.tag(clip, top=3, project=project, params_file=params_file)) == list(got)[:3]

    # a waveform in memory gives what its file gives
    from ctxtag.audio.decode import load_clip

    cfg = load_params(project / params_file).audio
    assert ctxtag.tag(load_clip(clip, cfg), project=project, params_file=params_file) == got
    from ctxtag.audio.decode import decode

    whole = decode(clip, cfg.sample_rate)                       # uncropped: cropped as a file is
    assert ctxtag.tag(whole, project=project, params_file=params_file) == got
    with pytest.raises(ValueError, match="one non-empty channel"):
        ctxtag.tag(np.zeros((2, 100), np.float32), project=project, params_file=params_file)

    text = run_tool(project, "ctxtag", "--params", params_file, "predict", str(clip), "--top", "3")
    assert text.splitlines()[0] == f"model: {version}" and text.splitlines()[1] == str(clip)


@pytest.mark.slow
def test_predict_without_a_champion_says_what_to_do(dvc_project, tmp_path):
    raw = yaml.safe_load((dvc_project / "params.yaml").read_text())
    raw["registry"]["model_name"] = f"never-registered-{uuid.uuid4().hex[:6]}"
    params_file = dvc_project / f"params-{raw['registry']['model_name']}.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    try:
        proc = run_tool(dvc_project, "ctxtag", "--params", params_file.name, "predict", str(_clip(dvc_project)),
                        ok=False)
        assert proc.returncode == 2
        assert "no @champion" in proc.stderr and "--model data/models/" in proc.stderr
        # an explicit checkpoint needs no registry
        ckpt = f"data/models/{raw['train']['loss']}/best.pt"
        out = json.loads(run_tool(dvc_project, "ctxtag", "--params", params_file.name, "predict",
                                  str(_clip(dvc_project)), "--model", ckpt, "--json"))
        assert out["model"] == ckpt and len(out["predictions"][0]["contexts"]) == 5
    finally:
        params_file.unlink()


@pytest.mark.slow
def test_a_checkpoint_that_is_not_what_was_registered_is_refused(champion):
    project, params_file, _ = champion
    params = load_params(project / params_file)
    with in_project(project):
        path, _ = champion_checkpoint(params, project)
        saved = path.read_bytes()
        try:
            shutil.copy(project / params.paths.checkpoint("none"), path)      # another model's weights
            with pytest.raises(ValueError, match="does not match the sha256"):
                champion_checkpoint(params, project)
            proc = run_tool(project, "ctxtag", "--params", params_file, "predict", str(_clip(project)), ok=False)
            assert proc.returncode == 2 and "refusing the @champion" in proc.stderr and "Traceback" not in proc.stderr
        finally:
            path.write_bytes(saved)
        assert champion_checkpoint(params, project)[0] == path


@pytest.mark.slow
def test_served_user_models_are_the_context_champions_checked_parts(champion):
    project, params_file, _ = champion
    params = load_params(project / params_file)
    with in_project(project):
        parts, version = champion_files(params, "context", project)
        # the user models the API serves, and the tagger that computes their track features
        assert set(parts) == {"audio_user", "audio_user_situation", "situational", "tagger"}
        assert version == f"{params.registry.context_model_name}/1"
        # registered copies, not the pipeline's files (which the next `dvc repro` may replace)
        assert all(project / params.paths.user_models not in p.resolve().parents for p in parts.values())
        path = parts["situational"]
        saved = path.read_bytes()
        try:
            path.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))           # one bit changed
            with pytest.raises(ValueError, match="does not match the sha256"):
                champion_files(params, "context", project)
        finally:
            path.write_bytes(saved)


@pytest.mark.slow
def test_contexts_for_a_user_and_situation(champion):
    project, params_file, _ = champion
    hist = pd.read_parquet(project / "data/feast/user_history.parquet")
    user = str(hist.sort_values("n_streams")["user_id"].iloc[-1])
    kw = {"project": project, "params_file": params_file}
    got = ctxtag.contexts_for(user, "car", "cellular", "2026-01-07T08:15:00+01:00", **kw)
    contexts = load_params(project / params_file).contexts
    assert set(got) == set(contexts) and abs(sum(got.values()) - 1) < 1e-3
    assert list(got.values()) == sorted(got.values(), reverse=True)
    other = ctxtag.contexts_for(user, "speaker", "wifi", "2026-01-10T23:50:00+01:00", top=3, **kw)
    assert len(other) == 3 and other != dict(list(got.items())[:3])       # the situation matters

    with pytest.raises(ValueError, match="device"):
        ctxtag.contexts_for(user, "toaster", "wifi", "2026-01-07T08:15:00+01:00", **kw)
    with pytest.raises(ValueError, match="timestamp"):
        ctxtag.contexts_for(user, "car", "wifi", "2026-01-07T08:15:00", **kw)      # no UTC offset
    with pytest.raises(KeyError, match="unknown user"):
        ctxtag.contexts_for("nobody-at-all", "car", "wifi", "2026-01-07T08:15:00+01:00", **kw)
