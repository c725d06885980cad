"""Each command's wall time, one JSON line per run, so `ctxtag summary` can say where a pipeline
run's time went. Appended with one write (O_APPEND): commands that end at once (Airflow tasks in
parallel) never interleave their lines; a torn last line (a killed writer) is ended by the next
record and skipped on reading."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path


def record(path: Path, step: str, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "seconds": round(seconds, 2),
                       "ended": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"      # a killed writer's last line
        os.write(fd, (("\n" if torn else "") + line).encode())
    finally:
        os.close(fd)


def latest(path: Path) -> dict[str, dict]:
    """The last record of each step, in the order the steps last ended."""
    last: dict[str, dict] = {}
    if not path.exists():
        return last
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            last.pop(row["step"], None)
            last[row["step"]] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return last
