"""Outputs are written atomically: a writer killed mid-write leaves the old file, never a partial one."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ctxtag.common.io import atomic_dir, atomic_path, read_matrix, write_json, write_matrix


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_matrix_round_trips(tmp_path):
    ids, y = np.array(["t1", "t2"], dtype=object), np.array([[1, 0], [0, 1]])
    write_matrix(ids, y, ("a", "b"), tmp_path / "m.csv")
    got_ids, got_y = read_matrix(tmp_path / "m.csv", ("a", "b"))
    assert got_ids.tolist() == ["t1", "t2"] and got_y.tolist() == y.tolist()


WRITER = """
import sys, time
from pathlib import Path
from ctxtag.common.io import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp, tmp.open("w") as fh:
    fh.write("partial")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
    fh.write(" and the rest")
"""


def _kill_9_while_writing(code: str, target) -> None:
    """Run ``code`` (a writer that prints "writing" mid-write) and kill -9 it there."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_9_mid_write_leaves_the_previous_output(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("previous")
    _kill_9_while_writing(WRITER, target)
    time.sleep(0.1)
    assert target.read_text() == "previous"          # the partial temp file never replaced it
    write_json({"v": 2}, target)                     # the next writer clears what the killed one left
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_only_a_dead_writers_temp_is_cleared(tmp_path):
    dead, live = tmp_path / ".out.json.999999999.tmp", tmp_path / ".out.json.1.tmp"   # pid 1 always runs
    dead.write_text("left by a killed writer")
    live.write_text("a write in progress")
    write_json({"v": 1}, tmp_path / "out.json")
    assert not dead.exists() and live.exists()


DIR_WRITER = """
import sys, time
from pathlib import Path
from ctxtag.common.io import atomic_dir
with atomic_dir(Path(sys.argv[1])) as staging:
    (staging / "a.csv").write_text("new a")
    print("writing", flush=True)
    time.sleep(60)
    (staging / "b.csv").write_text("new b")
"""


def test_atomic_dir_swaps_a_whole_folder_in_and_a_kill_keeps_the_old_one(tmp_path):
    world = tmp_path / "raw"
    world.mkdir()
    (world / "a.csv").write_text("old a")
    (world / "b.csv").write_text("old b")
    _kill_9_while_writing(DIR_WRITER, world)
    assert {p.name: p.read_text() for p in world.iterdir()} == {"a.csv": "old a", "b.csv": "old b"}

    with pytest.raises(RuntimeError), atomic_dir(world) as staging:       # a failing writer: same
        (staging / "a.csv").write_text("new a")
        raise RuntimeError("failed")
    assert (world / "a.csv").read_text() == "old a"

    with atomic_dir(world) as staging:
        (staging / "c.csv").write_text("new c")
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]              # staging and old cleared
    assert [p.name for p in world.iterdir()] == ["c.csv"]


def test_atomic_dir_killed_between_its_renames_gets_the_old_folder_back(tmp_path):
    world = tmp_path / "raw"
    (tmp_path / ".raw.old").mkdir()                     # as a writer killed after renaming it aside
    (tmp_path / ".raw.old" / "a.csv").write_text("old a")
    with pytest.raises(RuntimeError), atomic_dir(world):
        assert (world / "a.csv").read_text() == "old a"   # restored before the new one is built
        raise RuntimeError("failed")
    assert (world / "a.csv").read_text() == "old a"
