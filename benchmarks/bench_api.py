"""Load test of the HTTP API on localhost: a real `ctxtag serve` (uvicorn, one process) hit by
concurrent clients; throughput and p50/p99 latency per endpoint.

    python benchmarks/bench_api.py [--n 400] [--concurrency 8]

Needs the outputs of `make demo` and a @champion (`ctxtag register && ctxtag promote`).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(url: str, bodies: list[dict], concurrency: int) -> tuple[float, np.ndarray]:
    def one(body: dict) -> float:
        t = time.perf_counter()
        r = client.post(url, json=body)
        r.raise_for_status()
        return time.perf_counter() - t

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        one(bodies[0])                                         # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            lat = np.array(list(pool.map(one, bodies)))
        return time.perf_counter() - start, lat


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    port = _port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "ctxtag"), "serve", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/ready", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            print("server did not become ready (run `make demo`, then `ctxtag register && ctxtag promote`)")
            return 1
        users = pd.read_parquet(ROOT / "data/feast/user_history.parquet")["user_id"].unique()
        rng = np.random.default_rng(0)
        devices = ["phone", "computer", "tablet", "speaker", "car", "tv"]
        situations = [{"user_id": str(rng.choice(users)), "device": str(rng.choice(devices)), "network": "wifi",
                       "timestamp": f"2026-01-{rng.integers(5, 28):02d}T{rng.integers(0, 24):02d}:30:00+01:00"}
                      for _ in range(args.n)]
        cases = {
            "/contexts": situations,
            "/recommend (chosen context, 773 tracks)": [{"user_id": s["user_id"], "context": "sleep", "k": 10}
                                                        for s in situations],
        }
        print(f"{args.n} requests per endpoint, {args.concurrency} concurrent clients, one uvicorn process")
        for name, bodies in cases.items():
            url = f"{base}{name.split()[0]}"
            wall, lat = _load(url, bodies, args.concurrency)
            print(f"{name:<42} {len(bodies) / wall:7.1f} req/s   p50 {np.percentile(lat, 50) * 1000:6.1f} ms"
                  f"   p99 {np.percentile(lat, 99) * 1000:6.1f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
