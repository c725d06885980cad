"""Does the DataLoader keep the device busy? Samples/s of the loader alone, of the training step
alone (batches already on the device), and of both together, measured side by side in one run.

    python benchmarks/bench_train_throughput.py [--device cuda] [--batch-size 16] [--num-workers 4]

Uses data/features/mels.npy (from `dvc repro`) when present, else random mels of the same shape.
If loader-alone is well above step-alone, the loader does not starve the device.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from ctxtag.config import TrainConfig
from ctxtag.tagger.dataset import MelDataset
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import _loader, _to_device, train_step


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--samples", type=int, default=4096, help="samples per loader pass (amortises worker start-up)")
    args = ap.parse_args()
    device = torch.device(args.device)
    cfg = dataclasses.replace(TrainConfig(), batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)

    path = Path("data/features/mels.npy")
    mels = np.load(path, mmap_mode="r") if path.exists() else np.random.default_rng(0).random((256, 96, 646), np.float32).astype(np.float16)
    n = len(mels)
    rows = np.resize(np.arange(n), max(n, args.batch_size * args.steps, args.samples))
    y = (np.random.default_rng(1).random((len(rows), 15)) < 0.25).astype(np.float32)
    ds = MelDataset(mels, rows, y, None, np.full_like(y, 0.8))
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"batch {args.batch_size}, workers {args.num_workers}, {len(ds)} samples from {'features' if path.exists() else 'random'}")

    # 1. loader alone (including the host->device copy)
    start, seen = time.perf_counter(), 0
    for batch in _loader(ds, cfg, shuffle=True, seed=0, device=device):
        mel, *_ = _to_device(batch, device)
        seen += len(mel)
    if device.type == "cuda":
        torch.cuda.synchronize()
    loader_sps = seen / (time.perf_counter() - start)

    # 2. training step alone, on a batch already on the device
    model = ChoiCNN().to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adadelta(model.parameters(), lr=0.1)
    batch = _to_device(ds.__getitems__(list(range(args.batch_size))), device)

    def step(*b: torch.Tensor) -> None:
        train_step(model, opt, b, cfg, device)

    for _ in range(3):
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_sps = args.steps * args.batch_size / (time.perf_counter() - start)

    # 3. both together: one epoch as training runs it
    start, seen = time.perf_counter(), 0
    for batch in _loader(ds, cfg, shuffle=True, seed=1, device=device):
        step(*_to_device(batch, device))
        seen += len(batch[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    e2e_sps = seen / (time.perf_counter() - start)

    print(f"loader alone      {loader_sps:10.1f} samples/s")
    print(f"train step alone  {step_sps:10.1f} samples/s")
    print(f"loader + step     {e2e_sps:10.1f} samples/s  ({e2e_sps / step_sps:.0%} of the step-alone rate; "
          f"loader/step ratio {loader_sps / step_sps:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
