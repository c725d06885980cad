"""Where each millisecond of a request goes: /contexts and /recommend split into their phases,
timed in process on the service the API runs (one thread), then the same requests over HTTP from
one client (benchmarks/loadgen.py, closed loop): the difference is the HTTP stack (uvicorn,
FastAPI routing, request validation, the thread hop, serialisation of the answer).

    python benchmarks/profile_api.py [--n 2000] [--project DIR] [--params FILE] [--online sqlite|redis]

Prints a table (median and p99 per phase, ms) and writes it as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # one thread, as a worker runs
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_api import ROOT, cases, load, serve  # noqa: E402


def _phases(service, situation: dict, request: dict) -> dict[str, float]:
    """Seconds per phase of one /contexts and one /recommend, as the service runs them."""
    from ctxtag.serving.service import situation_columns

    out, t = {}, time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    when = datetime.fromisoformat(situation["timestamp"])
    features = service.user_features(situation["user_id"])
    lap("contexts: Feast online read (situational_model features)")
    x = service._blocks(situation_columns(features, situation["device"], situation["network"], when, None, None))
    lap("contexts: feature blocks from the columns")
    ranked = service.contexts_of(x)
    lap("contexts: situational forest (compiled walk of all trees)")
    json.dumps({"contexts": [{"context": r["name"], "probability": r["score"]} for r in ranked.top(3)]})
    lap("contexts: ranking + JSON of the answer")
    features = service.user_features(request["user_id"])
    lap("recommend: Feast online read")
    u = service.user_terms(features)[0]
    lap("recommend: user term (user branch)")
    ids, scores = service.catalogue.tracks.recommend(u, service.params.contexts.index(request["context"]), request["k"])
    lap("recommend: score + rank the catalogue")
    json.dumps({"tracks": [{"track_id": i, "score": round(float(s), 5)} for i, s in zip(ids, scores, strict=True)]})
    lap("recommend: JSON of the answer")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--project", default=str(ROOT))
    ap.add_argument("--params", default=None)
    ap.add_argument("--online", default="sqlite", choices=["sqlite", "redis"])
    ap.add_argument("--redis-url", default="localhost:6379")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    from ctxtag.config import load_params
    from ctxtag.serving.service import Service

    torch.set_num_threads(1)
    project = Path(args.project)
    params_file = Path(args.params or project / "params.yaml")
    service = Service(load_params(params_file), project, online=args.online, redis_url=args.redis_url)
    bodies = cases(project, args.n)
    for s, r in zip(bodies["/contexts"][:50], bodies["/recommend"][:50], strict=True):     # warm-up
        _phases(service, s, r)
    runs = [_phases(service, s, r) for s, r in zip(bodies["/contexts"], bodies["/recommend"], strict=True)]
    rows = [{"phase": k, "p50_ms": round(float(np.median([x[k] for x in runs])) * 1000, 3),
             "p99_ms": round(float(np.percentile([x[k] for x in runs], 99)) * 1000, 3)} for k in runs[0]]
    for route in ("contexts", "recommend"):
        rows.append({"phase": f"{route}: in process, total", "p50_ms": round(float(np.median(
            [sum(v for k, v in x.items() if k.startswith(route)) for x in runs])) * 1000, 3), "p99_ms": None})
    del service
    server, base = serve(project, params_file, 1, online=args.online, redis_url=args.redis_url)
    try:
        for route in ("/contexts", "/recommend"):
            load(f"{base}{route}", bodies[route][:100], 1)
            r = load(f"{base}{route}", bodies[route], 1)
            rows.append({"phase": f"{route[1:]}: over HTTP, one client", "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]})
    finally:
        server.terminate()
        server.wait(timeout=60)
    for route in ("contexts", "recommend"):
        inside = next(r["p50_ms"] for r in rows if r["phase"] == f"{route}: in process, total")
        http = next(r["p50_ms"] for r in rows if r["phase"] == f"{route}: over HTTP, one client")
        rows.append({"phase": f"{route}: HTTP stack (difference)", "p50_ms": round(http - inside, 3), "p99_ms": None})
    print(f"{'phase':<62} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        p99 = "" if r["p99_ms"] is None else f"{r['p99_ms']:8.3f}"
        print(f"{r['phase']:<62} {r['p50_ms']:8.3f} {p99:>8}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
