"""`dvc exp run -S key=value`, as make reproduce uses it, in a git repository of the project:
the value reaches the stages, the experiment is recorded with it, and params.reproduce.yaml is
turned into overrides DVC accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, SMALL, run_tool


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_the_reproduce_overlay_becomes_overrides_of_existing_keys():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/params_overrides.py"), str(ROOT / "params.reproduce.yaml")],
                         capture_output=True, text=True, check=True).stdout
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = [a.strip("'") for a in out.split("-S ")[1:]]
    assert overrides, out
    for item in overrides:
        key, value = item.strip().strip("'").split("=", 1)
        section, leaf = key.split(".")
        assert leaf in params[section], key                      # a typo would add a key DVC ignores
        assert yaml.safe_load(value) != params[section][leaf], key   # every line changes something
    assert "-S audio.duration_s=30.0" in out and "-S labels.balance_cap=null" in out


@pytest.mark.slow
def test_exp_run_sets_a_value_for_the_stages_and_records_it(tmp_path):
    proj = tmp_path / "repo"
    proj.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, proj)
    shutil.copytree(ROOT / "ctxtag", proj / "ctxtag", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "scripts").symlink_to(ROOT / "scripts")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    (proj / ".gitignore").write_text("/data/\n/reports/\n/mlruns.db\n/mlartifacts/\n")
    _git(proj, "init", "-q")
    run_tool(proj, "dvc", "init", "-q")
    shutil.copytree(ROOT / ".dvc/plots", proj / ".dvc/plots")       # the project's plot templates
    _git(proj, "add", "-A")
    _git(proj, "commit", "-qm", "project")

    run_tool(proj, "dvc", "exp", "run", "-n", "stricter", "-S", "labels.min_playlists=4", "weights",
             timeout_s=600)
    # the workspace holds the experiment: its params and the outputs made with them
    assert yaml.safe_load((proj / "params.yaml").read_text())["labels"]["min_playlists"] == 4
    report = json.loads((proj / "reports/labels.json").read_text())
    assert report["tracks_labelled"] > 0
    shown = json.loads(run_tool(proj, "dvc", "exp", "show", "--json"))
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    names = {e.get("name") for e in exps}
    assert "stricter" in names, shown
    run = next(e for e in exps if e.get("name") == "stricter")["revs"][0]["data"]
    assert run["params"]["params.yaml"]["data"]["labels"]["min_playlists"] == 4
