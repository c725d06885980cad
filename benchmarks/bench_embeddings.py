"""Training throughput of Chen et al.'s audio branch (ctxtag.embeddings.model.AudioCNN), side by side:

    python benchmarks/bench_embeddings.py [--duration 3 10] [--steps 6] [--device cpu|cuda]

For each context duration: clips/s of one SGD step on a Metric-1vs4 batch (64 liked tracks, 4
disliked each, drawn from a 600-track pool as on the demo world), (a) embedding all 320 slots,
(b) embedding each distinct track of the batch once (what fit_audio does), and (c) (b) with
channels-last convolutions. Random log-mels of the params' front-end (128 bins, hop 512); the
figures are slots trained per second, so (b) and (c) count the work they skip.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctxtag.config import load_params
from ctxtag.embeddings.losses import max_margin_hinge
from ctxtag.embeddings.model import AudioCNN, similarity


def _step(cnn, opt, mels, slots, anchors, channels_last: bool) -> None:
    x = torch.from_numpy(mels)
    if channels_last:
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last).squeeze(1)
    ae = cnn(x)[slots]
    loss = max_margin_hinge(similarity(anchors[:, None, :], ae), 0.2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, nargs="+", default=[3.0, 10.0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    params = load_params()
    cfg, audio = params.embeddings, params.embedding_audio
    rng = np.random.default_rng(0)
    print(f"{'duration':>8} {'variant':<34} {'slots/s':>8} {'vs all slots':>12}")
    for duration in args.duration:
        frames = int(round(duration * audio.sample_rate / audio.hop_length))
        pool = rng.normal(size=(600, audio.n_mels, frames)).astype(np.float32)
        rows = rng.integers(0, 600, size=(cfg.batch_size, 5))
        uniq, inv = np.unique(rows, return_inverse=True)
        anchors = torch.randn(cfg.batch_size, cfg.dim)
        base = None
        for name, mels, slots, cl in (
                ("all 320 slots through the CNN", pool[rows.ravel()], torch.arange(rows.size).view(rows.shape), False),
                (f"distinct tracks once ({len(uniq)})", pool[uniq], torch.from_numpy(inv.reshape(rows.shape)), False),
                ("distinct once + channels-last", pool[uniq], torch.from_numpy(inv.reshape(rows.shape)), True)):
            torch.manual_seed(0)
            cnn = AudioCNN(audio.n_mels, cfg.dim, cfg.cnn_channels)
            if cl:
                cnn = cnn.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(cnn.parameters(), lr=0.1, momentum=0.9, nesterov=True)
            _step(cnn, opt, mels, slots, anchors, cl)                      # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                _step(cnn, opt, mels, slots, anchors, cl)
            rate = args.steps * rows.size / (time.perf_counter() - t0)
            base = base or rate
            print(f"{duration:>7g}s {name:<34} {rate:>8.0f} {rate / base:>11.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
