"""The listening-data plane at growing volume: synth -> ingest-logs -> user snapshots (the
computation of `ctxtag publish-features`), wall time, events/s and peak memory, at factors of
params.yaml's world (the factor multiplies synth.n_events: with today's 10k, factor 1000 = 10M
events, 10000 = 100M; the table in the README was measured with 40k). Each step is a fresh
subprocess, measured with /usr/bin/time. Writes benchmarks/results/data_plane.csv (+ .png) unless
--no-record (side-by-side trials).

    python benchmarks/bench_data_plane.py                         # factors 1 10 100
    python benchmarks/bench_data_plane.py --factor 1000 --factor 2500 --keep /data/scale
    python benchmarks/bench_data_plane.py --factor 10 --engine spark   # the same on Spark local[*]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_synth import scaled_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/data_plane.csv"

SNAPSHOTS = """
import sys, time
import pandas as pd
from ctxtag.config import load_params
from ctxtag.listening.engine import open_engine
from ctxtag.listening.history_embedding import fit_lake_projection
from ctxtag.listening.lake import lake_parts
from ctxtag.listening.snapshots import snapshot_files

params = load_params()
p = params.paths
# only the columns the snapshots read: at 100M events the whole catalogue as Python strings and the
# labels as int64 held ~2 GB through the run
tracks = pd.read_csv(p.tracks, dtype=str, usecols=["track_id", "artist_id"]).drop_duplicates("track_id")
# the labels `ctxtag label` would give: the world's true ones stand in (same shape, no label run needed)
truth = pd.read_csv(p.truth / "true_labels.csv", usecols=["track_id", *params.contexts],
                    dtype={"track_id": str, **dict.fromkeys(params.contexts, "int8")}).set_index("track_id")
engine = open_engine(params.data_plane)
parts = lake_parts(p.lake)
projection = fit_lake_projection(engine, parts, params.user_models.history_dim, params.seed)
stats = snapshot_files(engine, parts, truth[list(params.contexts)], tracks.set_index("track_id")["artist_id"],
                       params.contexts, params.logs.devices, params.logs.networks, projection,
                       p.feast / "user_history.parquet", p.feast / "user_device_time.parquet")
print(stats)
"""


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, output) of one subprocess."""
    rss = cwd / ".maxrss"
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd], cwd=cwd, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, int(rss.read_text().split()[-1]) / 1024**2, done.stdout + done.stderr


def run(factor: float, workdir: Path, engine: str, memory_limit: str, reuse: bool) -> list[dict]:
    params = scaled_params(factor)
    params["data_plane"] = {**params.get("data_plane", {}), "engine": engine, "memory_limit": memory_limit}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ctxtag = [sys.executable, "-m", "ctxtag.cli"]
    rows = []
    events = params["synth"]["n_events"]
    if not (reuse and (workdir / "data/raw/truth/world.json").exists()):
        s, gb, _ = _timed([*ctxtag, "synth", "--no-audio"], workdir)
        rows.append({"step": "synth --no-audio", "seconds": s, "peak_gb": gb})
    shutil.rmtree(workdir / "data/lake", ignore_errors=True)
    s, gb, _ = _timed([*ctxtag, "ingest-logs"], workdir)
    rows.append({"step": "ingest-logs", "seconds": s, "peak_gb": gb})
    s, gb, _ = _timed([sys.executable, "-c", SNAPSHOTS], workdir)
    rows.append({"step": "user snapshots", "seconds": s, "peak_gb": gb})
    return [{"factor": factor, "events": events, "engine": engine, **r,
             "events_per_s": round(events / r["seconds"])} for r in rows]


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for step in sorted({r["step"] for r in rows}):
        pts = sorted((r["events"], r["seconds"], r["peak_gb"]) for r in rows if r["step"] == step and r["engine"] == "duckdb")
        if pts:
            a.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=step)
            b.semilogx([p[0] for p in pts], [p[2] for p in pts], "o-", label=step)
    a.set(xlabel="events", ylabel="seconds", title="time (log-log: slope 1 = linear)")
    b.set(xlabel="events", ylabel="peak RSS (GB)", title="memory")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, action="append", help="world size factor (repeatable; default 1 10 100)")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    ap.add_argument("--memory-limit", default="6GB", help="DuckDB's memory limit (it spills past it)")
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the worlds (reused when present)")
    ap.add_argument("--no-record", action="store_true", help="print only: leave benchmarks/results as it is")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="ctxtag-bench-"))
    rows = []
    try:
        for factor in args.factor or [1, 10, 100]:
            measured = run(factor, base / f"x{factor:g}", args.engine, args.memory_limit, reuse=args.keep is not None)
            rows += measured
            for r in measured:                  # 2 steps where a kept world's synth is reused
                print(f"x{r['factor']:<6g} {r['events']:>11,} events  {r['engine']:<7} {r['step']:<17} "
                      f"{r['seconds']:8.1f} s  {r['events_per_s']:>10,} events/s  {r['peak_gb']:5.2f} GB", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.no_record:
        return
    old = list(csv.DictReader(RESULTS.open())) if RESULTS.exists() else []
    measured = {(r["factor"], r["engine"], r["step"]) for r in rows}
    kept = [r for r in old if (float(r["factor"]), r["engine"], r["step"]) not in measured]
    out = kept + [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    out.sort(key=lambda r: (r["engine"], float(r["factor"]), r["step"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    _plot([{**r, "events": int(r["events"]), "seconds": float(r["seconds"]), "peak_gb": float(r["peak_gb"])}
           for r in out], RESULTS.with_suffix(".png"))
    print(f"-> {RESULTS} and {RESULTS.with_suffix('.png')}")


if __name__ == "__main__":
    main()
