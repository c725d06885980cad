"""One split type of ISMIR 2020/2022 end to end: train the user-aware tagger, the situational GBT
and the joint model on its train streams, and score them beside the audio-only tagger on its test
streams with the user-centric protocols."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctxtag.config import Params
from ctxtag.context import situational
from ctxtag.context import train as user_train
from ctxtag.context.evaluation import MODELS, PAIRS, baselines, report
from ctxtag.context.metrics import bootstrap_users
from ctxtag.vocabulary import SPLITS

# the neural models and the inputs they see (the audio-only model is the tagger's own output)
NEURAL = {"audio_user": ("audio", "user"), "audio_user_situation": ("audio", "user", "situation")}
GBT = {"situational": ("situation", "user")}


def _rows(x: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in x.items()}


def run_split(frame: pd.DataFrame, x: dict[str, np.ndarray], y: np.ndarray, split: np.ndarray,
              params: Params) -> tuple[dict, dict]:
    """(reports per model + "_sizes", trained models: name -> (model, history)) of one split kind."""
    cfg, m = params.user_models, len(params.contexts)
    tr, va, te = (split == s for s in SPLITS)
    models: dict = {}
    probs = {"audio": x["audio_probs"][te]}
    for name, inputs in NEURAL.items():
        model, history = user_train.fit(_rows(x, tr), y[tr], _rows(x, va), y[va], inputs, m, cfg, params.seed)
        models[name] = (model, history)
        probs[name] = user_train.predict(model, _rows(x, te))
    for name, inputs in GBT.items():
        model = situational.fit(_rows(x, tr), y[tr], _rows(x, va), y[va], inputs, cfg, params.seed)
        models[name] = (model, [{"iterations": model.n_iter}])
        probs[name] = situational.predict(model, _rows(x, te), m)
    probs.update(baselines(y[tr], int(te.sum()), m, params.seed))
    users, tracks = frame["user_id"].to_numpy()[te], frame["track_id"].to_numpy()[te]
    reports = {name: report(name, probs[name], y[te], users, tracks, params.contexts, cfg.top_k, cfg.threshold)
               for name in MODELS}
    per_user = {name: reports[name]["satisfaction"].pop("per_user") for name in MODELS}   # not for the JSON
    ev = params.evaluate
    if ev.bootstrap > 0:
        reports["_bootstrap"] = bootstrap_users(users, y[te], {n: probs[n] for n in MODELS},
                                                {n: {"per_user": per_user[n]} for n in MODELS},
                                                cfg.top_k, ev.bootstrap, params.seed, ev.level, PAIRS)
    reports["_sizes"] = {s: int((split == s).sum()) for s in SPLITS}
    return reports, models


def summary(results: dict[str, dict]) -> dict:
    """The DVC metrics: per split kind, its sizes and each model's headline figures."""
    return {kind: {"sizes": r["_sizes"], **{m: {"stream": r[m]["stream"], "so_sg": r[m]["so_sg"]["macro"],
                                                "satisfaction": r[m]["satisfaction"],
                                                "intervals": r.get("_bootstrap", {}).get("intervals", {}).get(m)}
                                            for m in MODELS}}
            for kind, r in results.items()}


def mlflow_metrics(reports: dict) -> dict:
    """What one split kind's MLflow run records, by model and protocol."""
    out: dict = {}
    for model in MODELS:
        r = reports[model]
        out[model] = {**r["stream"], "satisfaction": {k: v for k, v in r["satisfaction"].items() if k != "users"},
                      **{proto: r[proto]["macro"] for proto in ("so_sg", "mo_sg", "mo_mg") if proto in r}}
    return out
