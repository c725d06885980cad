"""`ctxtag robustness`: the tagger (train.loss) on its test tracks as they are and perturbed —
gain, noise, time-stretch, pitch-shift, MP3 re-encoding (ctxtag/audio/perturb.py) — so users know
how it behaves on real catalogue audio — and on the whole track (the mean over its windows,
params ``tagging``) beside the paper's one crop. Each row's macro metrics against the observed
labels, with bootstrap intervals and its paired difference from the clean crop (the same tracks,
the same resamples)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ctxtag.audio import perturb
from ctxtag.audio.decode import AudioError, load_track
from ctxtag.audio.melspec import LogMel
from ctxtag.common.headline import write_report
from ctxtag.common.io import read_matrix, read_split, write_text
from ctxtag.common.progress import progress
from ctxtag.config import AudioConfig, Params
from ctxtag.tagger.evaluation import COLUMNS, table
from ctxtag.tagger.inference import infer, load_cnn
from ctxtag.tagger.metrics import bootstrap, report

HEADLINE = ["perturbations.*.macro.roc_auc", "perturbations.*.macro.f1", "bootstrap.paired.*.roc_auc.*"]
CLEAN = "clean"
TRACK = "whole_track"         # the mean over its windows (params: tagging)


def run(params: Params) -> dict:
    p, contexts, cfg = params.paths, params.contexts, params.robustness
    for spec in cfg.perturbations:
        perturb.parse(spec)                      # a typo fails before any work
    model, meta = load_cnn(p.checkpoint(params.train.loss))
    audio = AudioConfig(**meta["audio"])
    ids, y = read_matrix(p.labels_csv, contexts)
    test = read_split(p.split_csv).reindex(ids).eq("test").to_numpy()
    files = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")["audio_path"]
    frontend = LogMel(audio).eval()
    clips, rows, skipped = [], [], []
    track_probs, pending, n_windows = [], [], []      # whole tracks: scored a few at a time, not kept
    for i in np.nonzero(test)[0]:
        try:
            clip, wins = load_track(p.audio_root / files[ids[i]], audio, params.tagging.max_windows,
                                    params.tagging.max_track_s)          # one decode for the crop and the windows
        except (AudioError, KeyError) as exc:
            skipped.append({"track_id": str(ids[i]), "reason": str(exc)})
            continue
        clips.append(clip)
        rows.append(i)
        pending.append(wins)
        n_windows.append(len(wins))
        if sum(map(len, pending)) >= 64:
            track_probs.append(_track_level(model, frontend, pending))
            pending = []
    if not clips:
        raise ValueError(f"{p.split_csv}: no test track with readable audio")
    if pending:
        track_probs.append(_track_level(model, frontend, pending))
    y_test = y[rows]
    probs = {}
    for spec in progress([CLEAN, *cfg.perturbations], total=1 + len(cfg.perturbations), description="perturbations"):
        batch = clips if spec == CLEAN else perturb.apply_all(clips, audio.sample_rate, spec, params.seed)
        with torch.no_grad():
            mels = frontend(torch.from_numpy(np.stack(batch))).numpy()
        probs[spec] = infer(model, mels, pad=True)[0]
    probs[TRACK] = np.concatenate(track_probs)
    ev = params.evaluate
    results = {spec: {"macro": report(y_test, pr, contexts, ev.threshold)["macro"]} for spec, pr in probs.items()}
    boot = bootstrap(y_test, probs, ev.bootstrap, params.seed, ev.threshold, ev.level, baseline=CLEAN) \
        if ev.bootstrap > 0 else {}
    mp3 = {spec: perturb.mp3_level(audio.sample_rate, perturb.parse(spec)[1])[1]
           for spec in cfg.perturbations if spec.startswith("mp3:")}
    n_windows = np.array(n_windows)
    out = {"model": params.train.loss, "tracks": len(rows), "skipped": skipped, "perturbations": results,
           "bootstrap": boot, "mp3_kbps_measured": mp3,
           "windows_per_track": {"mean": float(n_windows.mean()), "min": int(n_windows.min()),
                                 "max": int(n_windows.max())}}
    write_report(out, p, "robustness", HEADLINE)
    text = [f"# The tagger ({params.train.loss}) on perturbed test audio ({len(rows)} tracks, observed labels)", "",
            "One row per perturbation (`ctxtag/audio/perturb.py`): gain in dB, white noise at an SNR in dB, "
            "time-stretch rate, pitch shift in semitones, MP3 re-encoding in kbps. "
            f"`{TRACK}`: the whole track, the mean of the probabilities of its back-to-back windows of the "
            f"crop's length ({n_windows.min()}-{n_windows.max()} a track here, mean {n_windows.mean():.1f}; "
            "one where a clip is no longer than the crop, so it equals the clean crop).", "",
            table({spec: {"observed": r} for spec, r in results.items()}, "observed", boot, row="audio")]
    write_text("\n".join(text) + "\n", p.reports / "robustness.md")
    print("\n".join(text))
    return {spec: {k: r["macro"][k] for k, _ in COLUMNS if k in ("roc_auc", "f1")} for spec, r in results.items()}


def _track_level(model, frontend, wins: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Each track's probabilities averaged over its windows: every window through the tagger
    (``batch`` windows at a time, padded like the crops), then a mean per track."""
    flat = np.concatenate(wins)
    probs = []
    for start in range(0, len(flat), batch):
        with torch.no_grad():
            mels = frontend(torch.from_numpy(flat[start:start + batch])).numpy()
        probs.append(infer(model, mels, pad=True)[0])
    counts = np.array([len(w) for w in wins])
    return np.add.reduceat(np.concatenate(probs), np.r_[0, np.cumsum(counts)[:-1]]) / counts[:, None]
