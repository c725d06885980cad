"""Load test of the HTTP API on localhost: a real `ctxtag serve` (uvicorn, 1 and 2 worker processes
of one thread each) hit by benchmarks/loadgen.py (its own process, keep-alive connections);
per endpoint, side by side in one run: closed loop (each client sends when answered: the throughput)
and open loop (``--rate`` requests per second on schedule, latency from when each was due: what
clients see at that rate).

    python benchmarks/bench_api.py [--n 3000] [--concurrency 16] [--workers 1 2] [--rate 500] [--online redis]
    python benchmarks/bench_api.py --smoke --project DIR --params FILE     (CI: seconds)

Needs the outputs of `make demo` (a @champion registered and promoted). Goals (issue 14):
/contexts >= 500 req/s at 16 clients and p99 <= 10 ms at 500 req/s on 2 cores; /recommend p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(project: Path, params: Path, workers: int, timeout_s: float = 300, online: str = "sqlite",
          redis_url: str = "localhost:6379") -> tuple[subprocess.Popen, str]:
    port = _port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "ctxtag"), "--params", str(params), "serve",
                               "--port", str(port), "--workers", str(workers)], cwd=project,
                              env={**os.environ, "CTXTAG_ONLINE_STORE": online, "CTXTAG_REDIS_URL": redis_url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            # every worker builds its service at start-up; ready answers once one has
            if httpx.get(f"{base}/ready", timeout=30).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("server did not become ready (run `make demo` first)")


def load(url: str, bodies: list[dict], concurrency: int, rate: float | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
        fh.write("\n".join(json.dumps(b) for b in bodies))
    try:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks/loadgen.py"), url, fh.name,
                              "--concurrency", str(concurrency), *(["--rate", str(rate)] if rate else [])],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(fh.name)
    return json.loads(out.stdout)


def cases(project: Path, n: int) -> dict[str, list[dict]]:
    users = pd.read_parquet(project / "data/feast/user_history.parquet", columns=["user_id"])["user_id"].unique()
    rng = np.random.default_rng(0)
    devices = ["phone", "computer", "tablet", "speaker", "car", "tv"]
    situations = [{"user_id": str(rng.choice(users)), "device": str(rng.choice(devices)), "network": "wifi",
                   "timestamp": f"2026-01-{rng.integers(5, 28):02d}T{rng.integers(0, 24):02d}:30:00+01:00"}
                  for _ in range(n)]
    contexts = ["sleep", "workout", "party", "car", "relax"]
    return {"/contexts": situations,
            "/recommend": [{"user_id": s["user_id"], "context": str(rng.choice(contexts)), "k": 20} for s in situations]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--project", default=str(ROOT))
    ap.add_argument("--params", default=None)
    ap.add_argument("--rate", type=float, default=500.0, help="open loop: offered requests per second")
    ap.add_argument("--online", default="sqlite", choices=["sqlite", "redis"],
                    help="the online store the server reads (redis: publish to it first, "
                         "`ctxtag publish-features --online redis`)")
    ap.add_argument("--redis-url", default="localhost:6379")
    ap.add_argument("--smoke", action="store_true", help="a few requests, one worker: that it runs")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.workers, args.concurrency, args.rate = 60, [1], 4, 50.0
    project = Path(args.project)
    params = Path(args.params or project / "params.yaml")
    bodies = cases(project, args.n)
    rows = []
    print(f"{args.n} requests per endpoint, {args.concurrency} concurrent clients (benchmarks/loadgen.py), "
          f"{args.online} online store")
    for workers in args.workers:
        server, base = serve(project, params, workers, online=args.online, redis_url=args.redis_url)
        try:
            for route, reqs in bodies.items():
                load(f"{base}{route}", reqs[: max(args.concurrency * 4, 20)], args.concurrency)   # warm-up
                for mode, rate in (("closed", None), ("open", args.rate)):
                    r = {"route": route, "workers": workers, "concurrency": args.concurrency, "loop": mode,
                         "online": args.online,
                         **load(f"{base}{route}", reqs, args.concurrency, rate)}
                    rows.append(r)
                    what = "as fast as answered" if rate is None else f"offered {rate:.0f}/s"
                    print(f"{route:<11} workers {workers}  {what:<20} {r['req_per_s']:7.1f} req/s   "
                          f"p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   status {r['status']}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0 if all(set(r["status"]) == {"200"} for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
