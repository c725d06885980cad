"""/recommend's scoring against catalogue size: the user-aware tagger's track half precomputed,
exhaustive scoring up to serving.exhaustive_max tracks, two stages (IVF candidates, exact re-score)
beyond. Per-request latency (p50/p99 over users x contexts, one thread) and recall@20 of the
two-stage answer against exhaustive scoring, side by side at each size.

    python benchmarks/bench_recommend.py [--sizes 1000 100000 10000000] [--smoke]

Tracks beyond the demo world's are its audio embeddings resampled with noise; the model is the
demo's trained user-aware tagger (data/user_models/warm/audio_user.pt) when there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ctxtag.config import load_params
from ctxtag.serving.recommend import Recommender, RetrievalConfig

ROOT = Path(__file__).resolve().parents[1]


def _model_and_audio(params):
    import pandas as pd

    from ctxtag.context.artifacts import load_tagger, model_path

    path = ROOT / model_path(Path(params.paths.user_models) / params.serving.split, "audio_user")
    feats = ROOT / params.paths.feast / "track_features.parquet"
    if path.exists() and feats.exists():
        audio = np.stack(pd.read_parquet(feats, columns=["audio_embedding"])["audio_embedding"].dropna().to_numpy())
        return load_tagger(path), audio.astype(np.float32), "trained (demo)"
    from ctxtag.context.model import ContextTagger

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return ContextTagger({"audio": 256, "user": 49}, 15).eval(), rng.normal(size=(773, 256)).astype(np.float32), \
        "random (no demo outputs)"


def _terms(model, audio: np.ndarray, n: int, rng, chunk: int = 200_000) -> np.ndarray:
    out = np.empty((n, model.fused.out_features), np.float32)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        x = audio[rng.integers(0, len(audio), m)] + rng.normal(scale=0.3, size=(m, audio.shape[1])).astype(np.float32)
        out[lo:lo + m] = model.fused_term("audio", torch.from_numpy(x)).numpy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 10_000_000])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.users = [1_000, 30_000], 5
    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    s = params.serving
    model, audio, kind = _model_and_audio(params)
    rng = np.random.default_rng(0)
    user_dim = model.branches["user"].fc.in_features
    users = [model.fused_term("user", torch.from_numpy(rng.normal(size=(1, user_dim)).astype(np.float32))).numpy()[0]
             for _ in range(args.users)]
    head = (model.head.weight.detach().numpy(), model.head.bias.detach().numpy(), model.fused.bias.detach().numpy())
    print(f"model: {kind}; serving: exhaustive up to {s.exhaustive_max}, else {s.candidates} candidates, "
          f"nprobe {s.nprobe}")
    rows = []
    for n in args.sizes:
        terms = _terms(model, audio, n, rng)
        ids = [str(i) for i in range(n)]
        t = time.perf_counter()
        served = Recommender(ids, terms, *head, RetrievalConfig(s.exhaustive_max, s.candidates, s.nprobe))
        build = time.perf_counter() - t
        exact = Recommender(ids, terms, *head, RetrievalConfig(exhaustive_max=n)) if served.index is not None else served
        del terms
        lat, recall = [], []
        for u in users:
            for c in range(len(params.contexts)):
                t = time.perf_counter()
                got, _ = served.recommend(u, c, 20)
                lat.append(time.perf_counter() - t)
                if exact is not served and len(recall) < 150:
                    recall.append(len(set(got) & set(exact.recommend(u, c, 20)[0])) / 20)
        ms = np.array(lat) * 1000
        row = {"tracks": n, "kind": served.kind, "build_s": round(build, 1),
               "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
               "recall_at_20": round(float(np.mean(recall)), 3) if recall else 1.0}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del served, exact
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
