"""`ctxtag robustness`: the tagger (train.loss) on its test tracks as they are and perturbed —
gain, noise, time-stretch, pitch-shift, MP3 re-encoding (ctxtag/audio/perturb.py) — so users know
how it behaves on real catalogue audio. Each perturbation's macro metrics against the observed
labels, with bootstrap intervals and its paired difference from the clean audio (the same tracks,
the same resamples)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ctxtag.audio import perturb
from ctxtag.audio.decode import AudioError, load_clip
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


def run(params: Params) -> dict:
    p, contexts, cfg = params.paths, params.contexts, params.robustness
    for spec in cfg.perturbations:
        perturb.parse(spec)                      # a typo fails before any work
    model, meta = load_cnn(p.checkpoint(params.train.loss))
    audio = AudioConfig(**meta["audio"])
    ids, y = read_matrix(p.labels_csv, contexts)
    test = read_split(p.split_csv).reindex(ids).eq("test").to_numpy()
    files = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")["audio_path"]
    clips, rows, skipped = [], [], []
    for i in np.nonzero(test)[0]:
        try:
            clips.append(load_clip(p.audio_root / files[ids[i]], audio))
            rows.append(i)
        except (AudioError, KeyError) as exc:
            skipped.append({"track_id": str(ids[i]), "reason": str(exc)})
    if not clips:
        raise ValueError(f"{p.split_csv}: no test track with readable audio")
    y_test = y[rows]
    frontend = LogMel(audio).eval()
    probs = {}
    for spec in progress([CLEAN, *cfg.perturbations], total=1 + len(cfg.perturbations), description="perturbations"):
        batch = clips if spec == CLEAN else perturb.apply_all(clips, audio.sample_rate, spec, params.seed)
        with torch.no_grad():
            mels = frontend(torch.from_numpy(np.stack(batch))).numpy()
        probs[spec] = infer(model, mels, pad=True)[0]
    ev = params.evaluate
    results = {spec: {"macro": report(y_test, pr, contexts, ev.threshold)["macro"]} for spec, pr in probs.items()}
    boot = bootstrap(y_test, probs, ev.bootstrap, params.seed, ev.threshold, ev.level, baseline=CLEAN) \
        if ev.bootstrap > 0 else {}
    mp3 = {spec: perturb.mp3_level(audio.sample_rate, perturb.parse(spec)[1])[1]
           for spec in cfg.perturbations if spec.startswith("mp3:")}
    out = {"model": params.train.loss, "tracks": len(rows), "skipped": skipped, "perturbations": results,
           "bootstrap": boot, "mp3_kbps_measured": mp3}
    write_report(out, p, "robustness", HEADLINE)
    text = [f"# The tagger ({params.train.loss}) on perturbed test audio ({len(rows)} tracks, observed labels)", "",
            "One row per perturbation (`ctxtag/audio/perturb.py`): gain in dB, white noise at an SNR in dB, "
            "time-stretch rate, pitch shift in semitones, MP3 re-encoding in kbps.", "",
            table({spec: {"observed": r} for spec, r in results.items()}, "observed", boot, row="audio")]
    write_text("\n".join(text) + "\n", p.reports / "robustness.md")
    print("\n".join(text))
    return {spec: {k: r["macro"][k] for k, _ in COLUMNS if k in ("roc_auc", "f1")} for spec, r in results.items()}
