"""A small HTTP/1.1 load generator (asyncio, keep-alive connections, no HTTP library on the hot
path). Runs in its own process so that the server under test does not share its interpreter.

- closed loop (default): ``concurrency`` clients, each sending its next request when the previous
  answer is in — the throughput the server reaches;
- open loop (``--rate R``): requests are due on a fixed schedule of R per second spread over the
  ``concurrency`` connections, and latency counts from when a request was *due*, so a stalled
  server is charged for the requests it delayed (no coordinated omission, as wrk2) — the latency
  clients see at that rate.

    python benchmarks/loadgen.py URL BODIES.jsonl --concurrency 16 [--rate 500] [--header 'Authorization: Bearer k']

Prints one JSON line: requests, seconds, req/s, p50/p90/p99/max latency (ms), status counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from urllib.parse import urlsplit

import numpy as np


async def _client(host: str, port: int, path: str, bodies: list[bytes], headers: str, lat: list, codes: Counter,
                  due: list[float] | None = None):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            if due is not None:                 # open loop: wait for the slot, charge from it
                if due[i] > t:
                    await asyncio.sleep(due[i] - t)
                t = due[i]
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            codes[status] += 1
    finally:
        writer.close()


async def run(url: str, bodies: list[bytes], concurrency: int, headers: list[str], rate: float | None = None) -> dict:
    u = urlsplit(url)
    extra = "".join(f"{h}\r\n" for h in headers)
    lat: list[float] = []
    codes: Counter = Counter()
    share = [bodies[i::concurrency] for i in range(concurrency)]
    start = time.perf_counter() + 0.05
    # request j is due at start + j / rate; connection i sends requests i, i + concurrency, ...
    dues = [[start + j / rate for j in range(i, len(bodies), concurrency)] if rate else None
            for i in range(concurrency)]
    await asyncio.gather(*(_client(u.hostname, u.port, u.path, s, extra, lat, codes, d)
                           for s, d in zip(share, dues, strict=True) if s))
    wall = time.perf_counter() - start
    ms = np.array(lat) * 1000
    return {"requests": len(lat), "seconds": round(wall, 3), "req_per_s": round(len(lat) / wall, 1),
            **({"offered_per_s": rate} if rate else {}),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 90, 99)},
            "max_ms": round(float(ms.max()), 2), "status": {str(k): v for k, v in sorted(codes.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("bodies", help="JSON lines, one request body each")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", type=float, default=None, help="open loop: requests per second, on schedule")
    ap.add_argument("--header", action="append", default=[])
    args = ap.parse_args()
    with open(args.bodies, "rb") as fh:
        bodies = [line.strip() for line in fh if line.strip()]
    print(json.dumps(asyncio.run(run(args.url, bodies, args.concurrency, args.header, args.rate))))


if __name__ == "__main__":
    main()
