"""Shared fixtures: the real data under ../shared (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONTEXTS = ("car", "chill", "club", "dance", "gym", "happy", "night", "party",
            "relax", "running", "sad", "sleep", "summer", "work", "workout")


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path} (../shared is only on developer and CI machines)")
    return path


@pytest.fixture
def contexts() -> tuple[str, ...]:
    return CONTEXTS
