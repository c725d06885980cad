"""`.venv/bin/dvc repro` from a plain shell (the venv not activated) runs the stages: every cmd
goes through scripts/ctxtag, which finds the project's own .venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT


def test_a_stage_runs_the_projects_ctxtag_without_an_activated_venv(tmp_path):
    venv_bin = Path(sys.executable).parent
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/ctxtag").symlink_to(venv_bin / "ctxtag")
    # the same command form as every dvc.yaml stage
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["synth"]["cmd"].split()[0]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"help": {"cmd": f"{cmd} --help > usage.txt", "outs": ["usage.txt"]}}}))
    plain = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path))}   # no venv on PATH
    subprocess.run([str(venv_bin / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, env=plain, check=True)
    done = subprocess.run([str(venv_bin / "dvc"), "repro", "-q"], cwd=tmp_path, env=plain,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "usage.txt").read_text().startswith("usage: ctxtag")
