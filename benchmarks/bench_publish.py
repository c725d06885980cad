"""What a republish costs as the catalogue grows (`ctxtag publish`, ctxtag/platform/publication.py):
materialising a registered version's track view (grows with the tracks) beside the switch that
serves it (one registry write pointing the feature services at it: constant).

    python benchmarks/bench_publish.py [--sizes 10000 100000] [--online sqlite|redis] [--redis HOST:PORT]

Synthetic track features of the real shape (15 probabilities, a 256-d embedding, the model's name)
in a temporary Feast repository; two versions published one after the other, as a promotion does.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.config import Params
from ctxtag.platform.feast_definitions import definitions, offline_file
from ctxtag.platform.feature_store import materialize_files, open_store
from ctxtag.platform.publication import view_name


def _tracks(n: int, model: str, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({"track_id": [f"t{i:08d}" for i in range(n)],
                         "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                         "context_probs": list(rng.random((n, 15), dtype=np.float32)),
                         "audio_embedding": list(rng.random((n, 256), dtype=np.float32)),
                         "tagger": model})


def _users(folder: Path, params: Params) -> None:
    """A few users, so the user views the services name exist."""
    users = [f"u{i}" for i in range(10)]
    stamp = pd.Timestamp("2026-01-01", tz="UTC")
    history = pd.DataFrame({"user_id": users, "event_timestamp": stamp, "n_streams": 1,
                            **{f"ctx_count_{c}": 0 for c in params.contexts},
                            **{f"ctx_share_{c}": 0.0 for c in params.contexts},
                            "top_artists": [["a"]] * 10, "history_embedding": [np.zeros(16, np.float32)] * 10})
    device = pd.DataFrame({"user_id": users, "event_timestamp": stamp,
                           **{f"device_share_{d}": 0.0 for d in params.logs.devices},
                           **{f"network_share_{n}": 0.0 for n in params.logs.networks},
                           "hour_dist": [np.zeros(24, np.float32)] * 10, "weekday_dist": [np.zeros(7, np.float32)] * 10,
                           **{c: 0.0 for c in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")}})
    history.to_parquet(offline_file(folder, "user_history"))
    device.to_parquet(offline_file(folder, "user_device_time"))


def run(n: int, online: str, redis_url: str) -> list[dict]:
    params, rng, rows = Params(), np.random.default_rng(0), []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _users(folder, params)
        store = open_store(folder, online, redis_url=redis_url, project=f"bench{n}")
        for version in (1, 2):
            model = f"bench-context-model/{version}"
            view = view_name(model)
            track_file = Path(f"{view}.parquet")
            _tracks(n, model, rng).to_parquet(folder / track_file, index=False)
            objects = definitions(Path("."), params.contexts, params.logs.devices, params.logs.networks,
                                  embeddings=False, track_view=view, track_file=track_file)
            services = [o for o in objects if type(o).__name__ == "FeatureService"]
            start = time.perf_counter()
            store.apply([o for o in objects if type(o).__name__ != "FeatureService"])
            applied = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):             # Feast's own lines
                materialize_files(store, [folder / track_file], [view])
            materialised = time.perf_counter()
            store.apply(services)                    # the switch
            switched = time.perf_counter()
            rows.append({"tracks": n, "version": version, "online": online, "apply_view_s": applied - start,
                         "materialise_s": materialised - applied, "tracks_per_s": n / (materialised - applied),
                         "switch_ms": 1000 * (switched - materialised)})
        if online == "redis":
            store.teardown()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--online", choices=["sqlite", "redis"], default="sqlite")
    ap.add_argument("--redis", default="127.0.0.1:6379")
    args = ap.parse_args()
    print(f"{'tracks':>8} {'version':>7} {'apply view s':>12} {'materialise s':>13} {'tracks/s':>9} {'switch ms':>9}")
    for n in args.sizes:
        for r in run(n, args.online, args.redis):
            print(f"{r['tracks']:>8} {r['version']:>7} {r['apply_view_s']:>12.2f} {r['materialise_s']:>13.1f} "
                  f"{r['tracks_per_s']:>9.0f} {r['switch_ms']:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
