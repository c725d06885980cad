"""/recommend's scoring against catalogue size: the user-aware tagger's track half precomputed,
exhaustive scoring up to serving.exhaustive_max tracks, two stages beyond (the lists of the user's
nearest prototypes, re-scored exactly). Per request: latency (p50/p99 over users x contexts, one
thread) and recall@20 of the served answer against exhaustive scoring; per catalogue: build time.

    python benchmarks/bench_recommend.py [--sizes 1000 100000 10000000] [--project DIR] [--smoke]

Users are honest: the prototypes are clustered from one half of the demo world's users (every
daily snapshot of theirs, as serving samples the published history) and recall is measured on the
other half's latest snapshot. The first row is the demo world itself with two stages forced (its
catalogue is small enough that serving scores it whole). Tracks beyond the demo world's are its
audio embeddings resampled with noise. Without demo outputs, a random model and random users.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # one thread, as a worker runs
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ctxtag.config import load_params  # noqa: E402
from ctxtag.serving.recommend import (  # noqa: E402
    Recommender,
    RetrievalConfig,
    log_odds,
    prototype_lists,
    prototypes,
)

ROOT = Path(__file__).resolve().parents[1]


def _world(project: Path, params):
    """(model, catalogue audio (n, 256), fit users' terms, held-out users' terms, what it is)."""
    import pandas as pd

    from ctxtag.context.artifacts import load_tagger, model_path
    from ctxtag.context.features import blocks
    from ctxtag.serving.service import user_terms

    path = project / model_path(Path(params.paths.user_models) / params.serving.split, "audio_user")
    feast = project / params.paths.feast
    if path.exists() and (feast / "track_features.parquet").exists():
        model = load_tagger(path)
        audio = np.stack(pd.read_parquet(feast / "track_features.parquet", columns=["audio_embedding"])
                         ["audio_embedding"].dropna().to_numpy()).astype(np.float32)
        history = pd.read_parquet(feast / "user_history.parquet").sort_values("event_timestamp")
        users = history["user_id"].drop_duplicates().sample(frac=1.0, random_state=0).to_numpy()
        fit = history[history["user_id"].isin(users[: len(users) // 2])]
        held = history[history["user_id"].isin(users[len(users) // 2:])].groupby("user_id").tail(1)
        p = params
        terms = [user_terms(model, blocks(f, p.contexts, p.logs.devices, p.logs.networks, p.logs.genders,
                                          p.user_models.history_dim)) for f in (fit, held)]
        return model, audio, terms[0], terms[1], f"the demo's trained tagger, {len(users)} users"
    from ctxtag.context.model import ContextTagger

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = ContextTagger({"audio": 256, "user": 49}, 15).eval()
    with torch.no_grad():
        u = model.fused_term("user", torch.from_numpy(rng.normal(size=(600, 49)).astype(np.float32))).numpy()
    return model, rng.normal(size=(773, 256)).astype(np.float32), u[:500], u[500:], "random (no demo outputs)"


@torch.no_grad()
def _terms(model, audio: np.ndarray, n: int, rng, chunk: int = 200_000) -> np.ndarray:
    """n track terms: the catalogue itself at its size, resampled with noise beyond."""
    if n == len(audio):
        return model.fused_term("audio", torch.from_numpy(audio)).numpy()
    out = np.empty((n, model.fused.out_features), np.float32)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        x = audio[rng.integers(0, len(audio), m)] + rng.normal(scale=0.3, size=(m, audio.shape[1])).astype(np.float32)
        out[lo:lo + m] = model.fused_term("audio", torch.from_numpy(x)).numpy()
    return out


def _exact_top(rec: Recommender, u: np.ndarray, k: int, chunk: int = 1_000_000) -> np.ndarray:
    """(contexts, k) rows of the exhaustive top k, every context in one pass over the terms."""
    best = np.zeros((len(rec.head_b), 0)), np.zeros((len(rec.head_b), 0), np.int64)
    for lo in range(0, len(rec), chunk):       # ranked by log-odds, as serving ranks
        p = log_odds(rec.logits(slice(lo, lo + chunk), u)).T
        s = np.concatenate([best[0], p], axis=1)
        r = np.concatenate([best[1], np.broadcast_to(np.arange(lo, lo + p.shape[1]), p.shape)], axis=1)
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
    return best[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 10_000_000])
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--recall-users", type=int, default=30)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.recall_users = [1_000, 30_000], 5
    torch.set_num_threads(1)
    params = load_params(args.project / "params.yaml")
    s = params.serving
    cfg = RetrievalConfig(s.exhaustive_max, s.prototypes, s.per_list, s.probes)
    model, audio, fit_users, held_users, kind = _world(args.project, params)
    head = (model.head.weight.detach().numpy(), model.head.bias.detach().numpy(), model.fused.bias.detach().numpy())
    print(f"model: {kind}; serving: exhaustive up to {cfg.exhaustive_max} tracks, else {cfg.probes} of "
          f"{cfg.prototypes} prototypes x {cfg.per_list} tracks per context; recall on "
          f"{min(len(held_users), args.recall_users)} held-out users x {len(params.contexts)} contexts", flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for n, forced in [(len(audio), True), *[(n, False) for n in args.sizes]]:
        terms = _terms(model, audio, n, rng)
        c = dataclasses.replace(cfg, exhaustive_max=0) if forced else cfg
        t = time.perf_counter()
        served = Recommender([str(i) for i in range(n)], terms, *head, c)
        if len(terms) > c.exhaustive_max:
            served.prototypes = prototypes(fit_users, c.prototypes)
            served.lists = prototype_lists(terms, served.prototypes, *head, c.per_list)
        build = time.perf_counter() - t
        lat, recall = [], []
        for u in held_users[:args.recall_users]:
            exact = _exact_top(served, u, 20) if served.lists is not None else None
            for ctx in range(len(params.contexts)):
                t = time.perf_counter()
                got, _ = served.recommend(u, ctx, 20)
                lat.append(time.perf_counter() - t)
                if exact is not None:
                    recall.append(len({int(g) for g in got} & set(exact[ctx].tolist())) / 20)
        ms = np.array(lat) * 1000
        row = {"tracks": n, "catalogue": "demo world (two stages forced)" if forced else "resampled",
               "kind": served.kind, "build_s": round(build, 1),
               "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
               "recall_at_20": round(float(np.mean(recall)), 3) if recall else 1.0}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del served, terms
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
