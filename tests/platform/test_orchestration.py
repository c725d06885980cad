"""What the Airflow tasks call (ctxtag.platform.orchestration), on real DVC and git projects: one
stage at a time, its output streamed; the day a run fetches; the push of the outputs to a remote
and the deployment's dvc.lock committed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ctxtag.platform.orchestration import StageFailed, dvc_push, fetch, repro, run_date

DVC = str(Path(sys.executable).parent / "dvc")


def _sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC project: a -> b (b reads a's output), a metric tracked by git, and a stage that fails."""
    proj = tmp_path / "proj"
    proj.mkdir()
    _sh(proj, "git", "init", "-q")
    _sh(proj, "git", "config", "user.email", "t@t.invalid")
    _sh(proj, "git", "config", "user.name", "t")
    _sh(proj, DVC, "init", "-q")
    (proj / "seed.txt").write_text("1\n")
    (proj / "dvc.yaml").write_text("""stages:
  a:
    cmd: cat seed.txt > a.txt && echo made a
    deps: [seed.txt]
    outs: [a.txt]
  b:
    cmd: "cat a.txt a.txt > b.txt && echo '{\\"n\\": 2}' > metric.json"
    deps: [a.txt]
    outs: [b.txt]
    metrics:
      - metric.json:
          cache: false
  broken:
    cmd: echo about to fail && exit 3
    deps: [seed.txt]
""")
    _sh(proj, "git", "add", "-A")
    _sh(proj, "git", "commit", "-qm", "project")
    return proj


def test_repro_runs_the_stage_alone_streams_its_output_and_says_whether_it_ran(project, capsys):
    first = repro(project, "a")
    assert first["stage"] == "a" and first["ran"] and first["worker"]
    assert "made a" in capsys.readouterr().out                  # the stage's own output, in the task log
    assert not repro(project, "a")["ran"]                       # nothing changed: DVC skips it
    assert repro(project, "b")["ran"]
    (project / "seed.txt").write_text("2\n")                    # a is stale now ...
    assert not repro(project, "b")["ran"]                       # ... and b alone neither reruns a nor itself
    assert (project / "a.txt").read_text() == "1\n"
    with pytest.raises(StageFailed, match="(?s)broken.*about to fail"):
        repro(project, "broken")
    assert repro(project, "a", force=False)["ran"]              # now a runs (its input changed)


def test_push_sends_the_outputs_to_the_remote_and_commits_the_deployment_lock(project, tmp_path, monkeypatch):
    repro(project, "a")
    repro(project, "b")
    assert dvc_push(project)["remote"] is None                  # no remote: nothing to share
    _sh(project, DVC, "remote", "add", "-q", "--local", "-d", "store", str(tmp_path / "remote"))
    monkeypatch.setenv("CTXTAG_COMMIT_LOCK", "1")
    pushed = dvc_push(project)
    assert pushed["remote"] == "store" and pushed["pushed"] == 2
    assert pushed["commit"] == _sh(project, "git", "rev-parse", "HEAD").strip()
    assert _sh(project, "git", "status", "--porcelain", "--", "dvc.lock", "metric.json") == ""   # both committed
    assert _sh(project, "git", "status", "--porcelain", "--", "seed.txt") == ""
    clone = tmp_path / "clone"                                  # a fresh clone restores the outputs
    _sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    _sh(clone, DVC, "remote", "add", "-q", "--local", "-d", "store", str(tmp_path / "remote"))
    _sh(clone, DVC, "pull", "-q")
    assert (clone / "b.txt").read_text() == "1\n1\n"
    again = dvc_push(project)                                   # nothing new: no second commit
    assert again["pushed"] == 0 and again["commit"] == pushed["commit"]


def test_a_run_fetches_its_day_without_a_logical_date_and_refuses_a_bad_one(tmp_path):
    after = datetime(2026, 1, 11, 0, 30, tzinfo=UTC)
    assert run_date(datetime(2026, 1, 10, 1, tzinfo=UTC), after) == "2026-01-10"
    assert run_date(None, after) == "2026-01-10"                       # manual, no logical date: yesterday
    assert run_date(None, after, "2026-01-05") == "2026-01-05"
    with pytest.raises(ValueError, match="not YYYY-MM-DD"):
        run_date(None, after, "None")
    with pytest.raises(ValueError, match="not YYYY-MM-DD"):
        fetch(str(tmp_path), tmp_path / "incoming", None)
    with pytest.raises(FileNotFoundError, match="no drops for 2026-01-10"):
        fetch(str(tmp_path / "source"), tmp_path / "incoming", "2026-01-10")
    assert not (tmp_path / "incoming").exists()                          # no date=None (or any) folder left
    day = tmp_path / "source/date=2026-01-10"
    day.mkdir(parents=True)
    (day / "drop.csv").write_text("user_id,track_id\nu,t\n")
    assert [f.name for f in fetch(str(tmp_path / "source"), tmp_path / "incoming", "2026-01-10")] == ["drop.csv"]
    assert fetch(str(tmp_path / "source"), tmp_path / "incoming", "2026-01-10") == []   # a rerun copies nothing
    assert os.listdir(tmp_path / "incoming/date=2026-01-10") == ["drop.csv"]           # no temporary left
