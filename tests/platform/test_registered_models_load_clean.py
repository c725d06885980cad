"""Every registered model loads where ctxtag is not installed: a fresh virtual environment built
from the model's own requirements.txt (resolved within the project's lock, from the local caches),
loading the model's folder by path — its code comes from the model (models from code, no pickle) —
and answering its input example with the same named probabilities as in the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctxtag.platform.orchestration import in_project
from tests.conftest import ROOT, tagger_champion

pytestmark = pytest.mark.slow

LOAD = """
import json, sys
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
example = mlflow.models.Model.load(sys.argv[1]).load_input_example(sys.argv[1])
out = model.predict(example)
import ctxtag
print(json.dumps({"columns": list(out.columns), "values": out.to_numpy().tolist(), "ctxtag": ctxtag.__file__,
                  "inputs": [c["name"] for c in model.metadata.get_input_schema().to_dict()]}))
"""


def _find_links() -> list[str]:
    """The local wheel folders pip is configured with (where this machine keeps torch's CPU build),
    as scripts/bootstrap.sh hands them to uv."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    folders = [v.strip("'") for k, _, v in (line.partition("=") for line in out.splitlines())
               if k.endswith("find-links")]
    return [arg for d in folders for part in d.split() if Path(part).is_dir() for arg in ("--find-links", part)]


def _venv(requirements: Path, where: Path) -> Path:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(where)], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(where / "bin/python"), *_find_links(),
                    "--constraint", str(ROOT / "requirements.lock"), "-r", str(requirements)],
                   check=True, timeout=900)
    return where / "bin/python"


@pytest.fixture(scope="module")
def champions(dvc_project, context_champion):
    return dvc_project, tagger_champion(dvc_project, context_champion, "clean")


@pytest.mark.parametrize("family", ["tagger", "context", "embeddings"])
def test_a_registered_model_loads_and_answers_from_its_own_requirements(champions, family, tmp_path):
    import mlflow
    import pandas as pd

    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.platform.registry import model_name

    project, params = champions
    name = model_name(params, family)
    with in_project(project):
        setup_mlflow(params.train.experiment)
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "m")))
        here = mlflow.pyfunc.load_model(str(local))
        expected = here.predict(mlflow.models.Model.load(str(local)).load_input_example(str(local)))
    assert not list(local.rglob("*.pkl")), "a registered model must not be a pickle"
    python = _venv(local / "requirements.txt", tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "CTXTAG_"))}
    env["CTXTAG_MEDIA_ROOT"] = str((project / params.paths.audio_root).resolve())   # where audio_path points
    run = subprocess.run([str(python), "-I", "-c", LOAD, str(local)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(got["ctxtag"]).resolve().is_relative_to(local.resolve())      # the model's own code
    assert got["columns"] == list(expected.columns)
    values = np.asarray(got["values"], dtype=float)
    if family == "embeddings":                  # a user's UE, a track's AE (unit length)
        assert got["inputs"] == ["user_id", "track_id"] and len(got["columns"]) == params.embeddings.dim
        assert np.isfinite(values).all() and abs(np.linalg.norm(values[1]) - 1) < 1e-5
    else:                                       # named probabilities, a documented input schema
        assert got["columns"] == list(params.contexts)
        assert "mel" in got["inputs"] and "audio_path" in got["inputs"]
        assert ((values >= 0) & (values <= 1)).all()
    np.testing.assert_allclose(values, pd.DataFrame(expected).to_numpy(), atol=1e-5)
