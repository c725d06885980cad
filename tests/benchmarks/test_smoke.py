"""Every serving benchmark runs at smoke size (seconds), so none silently rots: the recommendation
scaling without a pipeline, the HTTP load test and the online lookup on the pipeline's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_bench_recommend_smoke(tmp_path):
    out = _bench(str(ROOT / "benchmarks/bench_recommend.py"), "--smoke", "--out", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["tracks"] for r in rows][1:] == [1_000, 30_000]
    assert rows[0]["catalogue"].startswith("demo world") and rows[0]["kind"].startswith("two-stage")
    assert rows[1]["kind"] == "exhaustive" and rows[1]["recall_at_20"] == 1.0
    assert rows[2]["kind"].startswith("two-stage") and 0 < rows[2]["recall_at_20"] <= 1


@pytest.mark.slow
def test_bench_api_smoke(dvc_project, context_champion, tmp_path):
    from ctxtag.config import load_params
    from ctxtag.platform.orchestration import in_project
    from ctxtag.platform.promotion import promote
    from ctxtag.platform.registry import register

    raw = yaml.safe_load((dvc_project / "params.yaml").read_text())
    raw.setdefault("registry", {})["model_name"] = f"bench-{uuid.uuid4().hex[:6]}"
    raw["registry"]["context_model_name"] = context_champion
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    params = load_params(params_file)
    with in_project(dvc_project):
        register(params)
        promote(params, why="bench smoke")
    out = _bench(str(ROOT / "benchmarks/bench_api.py"), "--smoke", "--project", str(dvc_project),
                 "--params", str(params_file), "--out", str(tmp_path / "a.json"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = json.loads((tmp_path / "a.json").read_text())
    assert {(r["route"], r["loop"]) for r in rows} == {(route, loop) for route in ("/contexts", "/recommend")
                                                       for loop in ("closed", "open")}
    assert all(r["status"] == {"200": 60} for r in rows)
    assert all(r["offered_per_s"] == 50.0 for r in rows if r["loop"] == "open")
    out = _bench(str(ROOT / "benchmarks/profile_api.py"), "--n", "30", "--project", str(dvc_project),
                 "--params", str(params_file), "--out", str(tmp_path / "p.json"), cwd=ROOT / "benchmarks")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    phases = {r["phase"]: r["p50_ms"] for r in json.loads((tmp_path / "p.json").read_text())}
    assert phases["contexts: situational forest (compiled walk of all trees)"] > 0
    assert phases["contexts: over HTTP, one client"] > 0 and "recommend: HTTP stack (difference)" in phases


@pytest.mark.slow
def test_bench_online_lookup_smoke(dvc_project, redis_url):
    out = _bench(str(ROOT / "benchmarks/bench_online_lookup.py"), "--n", "20", "--project", str(dvc_project),
                 "--redis", redis_url)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ratio feast / raw" in out.stdout


def test_bench_publish_smoke():
    """Two versions of a 500-track catalogue published one after the other: a row each, the
    switch measured apart from the materialisation."""
    out = _bench(str(ROOT / "benchmarks/bench_publish.py"), "--sizes", "500")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("500", "1"), ("500", "2")]
    assert all(float(r[3]) > 0 and float(r[5]) > 0 for r in rows)
