"""One user's online feature lookup through Feast over Redis, beside a raw redis-py read of the
same key, interleaved in one run: p50 / p99 latency and their ratio.

    python benchmarks/bench_online_lookup.py [--n 2000] [--project DIR]

Needs a Redis server (127.0.0.1:6379, or `--redis HOST:PORT`) and the snapshots of `make demo` (data/feast/*.parquet).
The Feast call is what a service does: the situational_model FeatureService for one user,
converted to a dict. The raw read is HGETALL of the hash Feast stores that user under.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.config import load_params
from ctxtag.platform.feature_store import open_store, publish


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--project", default=".", help="the project whose data/feast to read")
    args = ap.parse_args()
    params = load_params(Path(args.project) / "params.yaml")
    src = Path(args.project) / params.paths.feast
    if not (src / "user_history.parquet").exists():
        print("skipped: run `make demo` first (needs data/feast/*.parquet)")
        return 0
    import redis
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    history = pd.read_parquet(src / "user_history.parquet")
    device_time = pd.read_parquet(src / "user_device_time.parquet")
    project = f"ctxtagbench{uuid.uuid4().hex[:6]}"
    host, port = args.redis.split(":")
    client = redis.Redis(host=host, port=int(port))
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp), "redis", redis_url=args.redis, project=project)
        publish(store, params, Path(tmp), history, device_time, pd.read_parquet(src / "track_features.parquet"))
        user = history["user_id"].iloc[0]
        service = store.get_feature_service("situational_model")
        key = _redis_key(project, EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)]), 3)
        assert client.hgetall(key), "the raw key holds nothing: Feast's key layout changed"

        def feast_call() -> None:
            store.get_online_features(features=service, entity_rows=[{"user_id": user}]).to_dict()

        def raw_call() -> None:
            client.hgetall(key)

        for _ in range(50):
            feast_call()
            raw_call()
        t_feast, t_raw = np.empty(args.n), np.empty(args.n)
        for i in range(args.n):                      # interleaved: both see the same machine state
            s = time.perf_counter()
            feast_call()
            t_feast[i] = time.perf_counter() - s
            s = time.perf_counter()
            raw_call()
            t_raw[i] = time.perf_counter() - s
        store.teardown()

    n_features = sum(len(p.features) for p in service.feature_view_projections)
    print(f"one user's lookup, {n_features} features in 2 views, {args.n} calls each, Redis {args.redis}")
    for name, t in (("feast get_online_features", t_feast), ("raw redis-py HGETALL", t_raw)):
        print(f"  {name:<26} p50 {np.percentile(t, 50) * 1e3:7.3f} ms   p99 {np.percentile(t, 99) * 1e3:7.3f} ms")
    print(f"  ratio feast / raw: p50 {np.percentile(t_feast, 50) / np.percentile(t_raw, 50):.1f}x, "
          f"p99 {np.percentile(t_feast, 99) / np.percentile(t_raw, 99):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
