"""Catalogue-scale batch tagging (ctxtag.tagger.batch): tracks/s and peak memory, CPU or CUDA.

    python benchmarks/bench_batch_tagging.py [--device cuda] [--tracks 256] [--partition-size 64]
                                             [--batch-size 32] [--world PROJECT] [--skip-e2e]

Rows, each measured in a fresh process (so its peak RSS is its own):
  model only        random float16 mels of the real shape (96 x 646), partition by partition, padded
                    mini-batches through the CNN: the tagger's throughput alone
  end-to-end cold   run_all on a catalogue with an empty mel cache: decode + log-mel + infer + parts
                    + combine (the catalogue: --world's tracks.csv and audio, e.g. a `ctxtag synth`
                    project, else --tracks generated 30 s FLAC clips)
  end-to-end warm   the same with the parts removed but the mel cache full: mels read, inferred again
  rerun, unchanged  every partition current: stat the audio, read the parts' footers, combine
The checkpoint is a randomly initialised CNN of the real size (throughput does not depend on the
weights). Peak RSS is the process's ru_maxrss (torch and its libraries included).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def _model_only(args: argparse.Namespace) -> dict:
    """Only the infer calls are timed (random mel generation is not the tagger's work)."""
    import torch

    from ctxtag.tagger.inference import infer
    from ctxtag.tagger.model import ChoiCNN

    torch.manual_seed(0)
    model = ChoiCNN().to(args.device).eval()
    rng = np.random.default_rng(0)
    infer(model, rng.normal(0, 1, (args.batch_size, 96, 646)).astype(np.float16), args.batch_size, pad=True)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    seconds, done = 0.0, 0
    while done < args.tracks:
        size = min(args.partition_size, args.tracks - done)
        mels = rng.normal(0, 1, (size, 96, 646)).astype(np.float16)
        t0 = time.perf_counter()
        infer(model, mels, args.batch_size, pad=True)
        sync()
        seconds += time.perf_counter() - t0
        done += size
    return {"tracks": done, "partitions": math.ceil(done / args.partition_size), "seconds": seconds}


def _project(args: argparse.Namespace, work: Path) -> Path:
    """A project folder: params.yaml, the catalogue (the --world's or generated) and a checkpoint."""
    import pandas as pd
    import soundfile as sf
    import torch
    import yaml

    from ctxtag.config import load_params
    from ctxtag.tagger.inference import model_meta
    from ctxtag.tagger.model import ChoiCNN

    project = work / "project"
    raw = project / "data/raw"
    raw.mkdir(parents=True)
    if args.world:
        world = Path(args.world).resolve()
        tracks = pd.read_csv(world / "data/raw/tracks.csv", dtype={"track_id": str})
        tracks.to_csv(raw / "tracks.csv", index=False)
        (raw / "audio").symlink_to(world / "data/raw/audio")
    else:
        (raw / "audio").mkdir()
        rng = np.random.default_rng(0)
        t = np.arange(30 * 22050) / 22050
        rows = []
        for i in range(args.tracks):            # distinct clips: a mel-cache miss each
            f0, f1 = rng.uniform(80, 1000, 2)
            wave = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * f1 / 400 * t))
            wave += 0.02 * rng.standard_normal(len(t))
            sf.write(raw / f"audio/{i:06d}.flac", wave.astype(np.float32), 22050)
            rows.append({"track_id": f"{i:06d}", "audio_path": f"audio/{i:06d}.flac"})
        pd.DataFrame(rows).to_csv(raw / "tracks.csv", index=False)
    (project / "params.yaml").write_text(yaml.safe_dump({"train": {"loss": "none"}}))
    params = load_params(project / "params.yaml")
    torch.manual_seed(0)
    cnn = ChoiCNN(params.audio.n_mels, params.audio.n_frames, len(params.contexts))
    ckpt = project / params.paths.checkpoint("none")
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": cnn.state_dict(), "meta": model_meta(params.contexts, params.audio, 0.3, "none")}, ckpt)
    return project


def _end_to_end(args: argparse.Namespace) -> dict:
    import os

    import pandas as pd

    from ctxtag.config import load_params
    from ctxtag.tagger.batch import BatchConfig, run_all

    os.chdir(args.project)
    params = load_params("params.yaml")
    n_tracks = len(pd.read_csv(params.paths.tracks, usecols=["track_id"]))
    config = BatchConfig(partitions=max(1, math.ceil(n_tracks / args.partition_size)), batch_size=args.batch_size,
                         chunk_tracks=min(256, args.partition_size), device=args.device)
    start = time.perf_counter()
    stats = run_all(params, config=config)
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {"tracks": stats["tracks"], "partitions": config.partitions, "seconds": time.perf_counter() - start,
            "computed": stats["partitions_computed"], "mel_cache_hits": stats["mel_cache_hits"]}


def _child(args: argparse.Namespace) -> None:
    result = {"model": _model_only, "e2e": _end_to_end}[args.child](args)
    result |= {"peak_rss_mb": _peak_rss_mb(), "gpu_peak_mb": _gpu_peak_mb(args.device)}
    print("RESULT " + json.dumps(result))


def _run_child(mode: str, args: argparse.Namespace, project: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--tracks", str(args.tracks),
           "--partition-size", str(args.partition_size), "--batch-size", str(args.batch_size)]
    if project:
        cmd += ["--project", str(project)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> int:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tracks", type=int, default=256, help="model-only tracks, and generated clips without --world")
    ap.add_argument("--partition-size", type=int, default=64, help="P: tracks per partition (N = ceil(tracks / P))")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--world", default=None, help="a project with data/raw/tracks.csv + audio (e.g. `ctxtag synth`)")
    ap.add_argument("--skip-e2e", action="store_true", help="model-only row alone")
    ap.add_argument("--keep", default=None, help="keep the scratch project here (default: a temp folder)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--project", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return 0
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device {args.device} ({name}), batch {args.batch_size}, partition size {args.partition_size}, "
          f"torch {torch.__version__}")
    rows = [("model only (random 96x646 mels)", _run_child("model", args))]
    if not args.skip_e2e:
        work = Path(args.keep or tempfile.mkdtemp(prefix="bench_batch_tagging_"))
        try:
            project = _project(args, work)
            source = f"--world {args.world}" if args.world else f"{args.tracks} generated 30 s FLAC clips"
            print(f"end-to-end catalogue: {source}")
            rows.append(("end-to-end cold (decode+mel+infer)", _run_child("e2e", args, project)))
            shutil.rmtree(project / "data/cache/track_features")
            rows.append(("end-to-end warm (mel cache hits)", _run_child("e2e", args, project)))
            rows.append(("rerun, nothing changed (skipped)", _run_child("e2e", args, project)))
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'row':<36} {'tracks':>7} {'parts':>6} {'redone':>7} {'seconds':>9} {'tracks/s':>10} "
          f"{'peak RSS MB':>12} {'GPU MB':>8}")
    for label, r in rows:
        gpu = f"{r['gpu_peak_mb']:.0f}" if r["gpu_peak_mb"] is not None else "-"
        redone = r.get("computed", r["partitions"])
        print(f"{label:<36} {r['tracks']:>7} {r['partitions']:>6} {redone:>7} {r['seconds']:>9.1f} "
              f"{r['tracks'] / r['seconds']:>10.1f} {r['peak_rss_mb']:>12.0f} {gpu:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
