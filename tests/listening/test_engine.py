"""The engine's own housekeeping (the SQL it runs is tested through the lake and snapshots)."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ctxtag.config import DataPlaneConfig
from ctxtag.listening.engine import SPILL_PREFIX, open_engine

OPEN_AND_WAIT = """
import sys, time
from ctxtag.config import DataPlaneConfig
from ctxtag.listening.engine import open_engine
e = open_engine(DataPlaneConfig(memory_limit="256MB"))
(e.temp_dir / "spilled.bin").write_bytes(b"x" * 1024)
print(e.temp_dir, flush=True)
time.sleep(600)
"""


def test_spill_folder_of_a_killed_engine_is_swept_by_the_next_one_and_a_live_one_is_kept():
    proc = subprocess.Popen([sys.executable, "-c", OPEN_AND_WAIT], cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, text=True)
    try:
        dead = Path(proc.stdout.readline().strip())
        assert dead.is_dir() and dead.name.startswith(f"{SPILL_PREFIX}{proc.pid}-")
        os.kill(proc.pid, signal.SIGKILL)                      # no close(): its folder stays behind
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert dead.is_dir()
    live = open_engine(DataPlaneConfig(memory_limit="256MB"))
    try:
        assert not dead.exists()                               # swept when the next engine opened
        again = open_engine(DataPlaneConfig(memory_limit="256MB"))
        assert live.temp_dir.is_dir()                          # its process runs: kept
        again.close()
    finally:
        live.close()
    assert not live.temp_dir.exists()
    assert Path(tempfile.gettempdir()) == dead.parent
