"""`ctxtag synth --no-audio` at scale: wall time, events/s and peak memory of the world generator
at factors of params.yaml's world (synth.n_artists, n_users, n_*_playlists and n_events
multiplied; factor 2500 is 100M events). Each run is a fresh subprocess in a temp folder.

    python benchmarks/bench_synth.py                 # factors 1 10 100
    python benchmarks/bench_synth.py --factor 1000 --keep /data/world_40m
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# the synth sizes that grow with the world (the rest, e.g. days and playlist lengths, stay)
SCALED = ("n_artists", "n_users", "n_context_playlists", "n_noise_playlists", "n_filtered_playlists", "n_events")


def scaled_params(factor: float, base: Path = Path("params.yaml")) -> dict:
    """``base``'s params with the world's sizes (SCALED) multiplied by ``factor``."""
    base = Path(base)
    if not base.is_absolute() and not base.exists():
        base = ROOT / base
    params = yaml.safe_load(base.read_text())
    for key in SCALED:
        params["synth"][key] = max(1, int(round(params["synth"][key] * factor)))
    return params


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(factor: float, workdir: Path) -> dict:
    """One ``ctxtag synth --no-audio`` of the scaled world in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    params = scaled_params(factor)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, "-c", "from ctxtag.cli import main; main()", "synth", "--no-audio"]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    rss_file = workdir / "maxrss.txt"
    if timer:
        cmd = [timer, "-f", "%M", "-o", str(rss_file), *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"ctxtag synth failed at factor {factor}:\n{done.stdout}\n{done.stderr}")
    if timer:
        peak_kb = int(rss_file.read_text().split()[-1])
    else:       # the largest child so far: right when the factors run in ascending order
        peak_kb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    raw = workdir / params["paths"]["raw"]
    world = json.loads((raw / "truth/world.json").read_text())
    return {"factor": factor, "events": world["events"], "tracks": world["tracks"], "users": world["users"],
            "playlists": world["playlists"], "seconds": seconds, "events_per_s": world["events"] / seconds,
            "peak_rss_mb": peak_kb / 1024, "disk_gb": _size(raw) / 1e9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, action="append", help="world size factor (repeatable; default 1 10 100)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp worlds go (default: the system temp dir)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the last world here instead of deleting it")
    args = parser.parse_args(argv)
    factors = args.factor or [1, 10, 100]
    print(f"{'factor':>7} {'events':>12} {'tracks':>9} {'users':>8} {'playlists':>10} {'seconds':>8} "
          f"{'events/s':>10} {'peak RSS':>9} {'on disk':>8}")
    for i, factor in enumerate(factors):
        tmp = Path(tempfile.mkdtemp(prefix=f"bench_synth_{factor:g}_", dir=args.dir))
        try:
            r = run(factor, tmp)
            print(f"{factor:>7g} {r['events']:>12,} {r['tracks']:>9,} {r['users']:>8,} {r['playlists']:>10,} "
                  f"{r['seconds']:>8.1f} {r['events_per_s']:>10,.0f} {r['peak_rss_mb']:>6,.0f} MB "
                  f"{r['disk_gb']:>5.2f} GB", flush=True)
        finally:
            if args.keep and i == len(factors) - 1:
                shutil.rmtree(args.keep, ignore_errors=True)
                shutil.move(str(tmp), args.keep)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
