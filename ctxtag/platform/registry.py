"""MLflow registry: register a trained tagger as ``@challenger``, move ``@champion`` only through the
promotion gate, roll back, and keep an audit trail of who did what, when and why.

The gate scores challenger and champion on the same test split, now (not from stored metrics, which
may come from another split or code version): the challenger's macro ROC-AUC must not be lower,
and no context's AUC may drop by more than ``registry.max_context_drop``.

The audit trail lives in the registry itself, as registered-model tags ``audit.NNNN`` holding one
JSON event each (action, versions, who, when, why, the gate's figures), so it follows the model to
whichever MLflow server holds it.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ctxtag.config import Params


class PromotionRefused(RuntimeError):
    """The gate said no; the message carries its reasons."""


@dataclass
class GateResult:
    passed: bool
    reasons: list[str]
    challenger_macro_auc: float
    champion_macro_auc: float | None
    context_drops: dict[str, float] = field(default_factory=dict)


def actor() -> str:
    """Who acts: CTXTAG_ACTOR (the Airflow task sets it to its DAG run) or the OS user."""
    return os.environ.get("CTXTAG_ACTOR") or getpass.getuser()


def _client(params: Params):
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    setup_mlflow(params.train.experiment)
    return mlflow.MlflowClient()


def audit_log(client, name: str) -> list[dict]:
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith("audit."))]


def _record(client, name: str, event: dict) -> dict:
    n = len(audit_log(client, name))
    event = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "who": actor(), **event}
    client.set_registered_model_tag(name, f"audit.{n + 1:04d}", json.dumps(event))
    return event


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def register(params: Params, why: str = "new training run") -> dict:
    """Register the train.loss tagger's logged model as a new version with alias @challenger;
    a run already registered is not registered twice (reruns are idempotent)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(params)
    name = params.registry.model_name
    run_file = params.paths.models / params.train.loss / "mlflow_run.json"
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file}: no MLflow run for {params.train.loss}; train with log_mlflow: true")
    run_id = json.loads(run_file.read_text())["run_id"]
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Choi CNN audio context tagger (ICASSP 2020)")
    existing = [v for v in client.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    if existing:
        version = str(max(existing, key=lambda v: int(v.version)).version)
        created = False
    else:
        models = mlflow.search_logged_models(filter_string=f"source_run_id='{run_id}'", output_format="list")
        if not models:
            raise FileNotFoundError(f"MLflow run {run_id} logged no model")
        version = str(mlflow.register_model(f"models:/{models[-1].model_id}", name).version)
        client.set_model_version_tag(name, version, "loss", params.train.loss)
        created = True
    if _alias_version(client, name, "challenger") != version:
        client.set_registered_model_alias(name, "challenger", version)
        _record(client, name, {"action": "register", "version": version, "run_id": run_id, "why": why})
    return {"model": name, "version": version, "run_id": run_id, "new_version": created}


def _test_auc(params: Params, uri: str) -> np.ndarray:
    """Per-context ROC-AUC of the model at ``uri`` on the test split."""
    import mlflow

    from ctxtag.tagger.dataset import load_splits
    from ctxtag.tagger.metrics import per_context
    from ctxtag.tagger.train import pick_device, predict

    p = params.paths
    device = pick_device(params.train)
    model = mlflow.pytorch.load_model(uri, map_location=device)
    data = load_splits(p.features, p.labelled, p.weights / "weights.npz", p.splits / "split.csv",
                       params.contexts, params.train.loss)
    probs, _ = predict(model, data.datasets["test"], params.train, device)
    return per_context(data.labels["test"], probs)["roc_auc"]


def _context_auc(params: Params, uri: str) -> np.ndarray:
    """Per-context ROC-AUC of the pyfunc context model at ``uri`` on test streams of the serving
    split type (a seeded sample of ``registry.context_gate_streams``): audio files, the user's
    features as of the stream, device, network and local time, as the model is served."""
    from datetime import timedelta, timezone

    import mlflow
    import pandas as pd

    from ctxtag.context.features import targets
    from ctxtag.context.splits import assign
    from ctxtag.tagger.metrics import per_context

    p = params.paths
    streams = pd.read_parquet(p.streams / "streams.parquet")
    tracks = pd.read_csv(p.tracks, dtype=str).drop_duplicates("track_id").set_index("track_id")
    track_split = pd.read_csv(p.splits / "split.csv", dtype=str).set_index("track_id")["split"]
    split = assign(streams, params.serving.split, params.split, params.seed, track_split, tracks["artist_id"])
    test = streams[split == "test"]
    test = test.sample(n=min(len(test), params.registry.context_gate_streams), random_state=params.seed)
    user_cols = [c for c in _user_columns(test) if c != "history_embedding"]
    frame = test[user_cols + ["device", "network", "age", "gender"]].reset_index(drop=True)
    frame["history_embedding"] = [None if e is None else [float(v) for v in e] for e in test["history_embedding"]]
    frame["audio_path"] = [str(p.audio_root / a) for a in tracks["audio_path"].reindex(test["track_id"])]
    offsets = test["utc_offset_min"].astype("float64").fillna(0).to_numpy()
    frame["timestamp"] = [t.tz_convert(timezone(timedelta(minutes=o))).isoformat()
                          for t, o in zip(test["event_timestamp"], offsets, strict=True)]
    probs = mlflow.pyfunc.load_model(uri).predict(frame).to_numpy()
    y = np.eye(len(params.contexts), dtype=np.uint8)[targets(test, params.contexts)]
    return per_context(y, probs)["roc_auc"]


FAMILIES = ("tagger", "context")


def _user_columns(streams) -> list[str]:
    """The user features (as Feast serves them) among a stream frame's columns: the context
    model's optional user inputs."""
    return [c for c in streams.columns if c.startswith(("ctx_share_", "device_share_", "network_share_"))
            or c in ("n_streams", "history_embedding", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos")]


def _name(params: Params, family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, not {family!r}")
    return params.registry.model_name if family == "tagger" else params.registry.context_model_name


def gate(params: Params, challenger: str, champion: str | None, family: str = "tagger") -> GateResult:
    """Both versions scored now on the same test data: the tagger on the test tracks, the context
    model on test streams."""
    name, margin = _name(params, family), params.registry.max_context_drop
    score = _test_auc if family == "tagger" else _context_auc
    chal = score(params, f"models:/{name}/{challenger}")
    if champion is None:
        return GateResult(True, ["no champion yet"], float(np.nanmean(chal)), None)
    champ = score(params, f"models:/{name}/{champion}")
    drops = {c: float(champ[j] - chal[j]) for j, c in enumerate(params.contexts)
             if np.isfinite(champ[j]) and np.isfinite(chal[j])}
    reasons = []
    if np.nanmean(chal) < np.nanmean(champ):
        reasons.append(f"macro ROC-AUC {np.nanmean(chal):.4f} < champion's {np.nanmean(champ):.4f}")
    reasons += [f"{c}: ROC-AUC down {d:.4f} (> {margin})" for c, d in drops.items() if d > margin]
    return GateResult(not reasons, reasons or ["macro ROC-AUC not worse, no context beyond the margin"],
                      float(np.nanmean(chal)), float(np.nanmean(champ)), drops)


def promote(params: Params, version: str | None = None, why: str = "", force: bool = False,
            family: str = "tagger") -> dict:
    """Move @champion to ``version`` (default: @challenger) if the gate passes, or with ``force``
    (recorded as such). Raises PromotionRefused with the gate's reasons otherwise."""
    client = _client(params)
    name = _name(params, family)
    version = version or _alias_version(client, name, "challenger")
    if version is None:
        raise PromotionRefused(f"{name} has no @challenger; run `ctxtag register` first")
    champion = _alias_version(client, name, "champion")
    if champion == version:
        return {"model": name, "version": version, "promoted": False, "reasons": ["already champion"]}
    result = gate(params, version, champion, family)
    event = {"version": version, "previous": champion, "why": why, "gate": asdict(result)}
    if not result.passed and not force:
        _record(client, name, {"action": "promotion_refused", **event})
        raise PromotionRefused(f"{name} v{version} not promoted: " + "; ".join(result.reasons))
    client.set_registered_model_alias(name, "champion", version)
    _record(client, name, {"action": "promote" if result.passed else "forced_promote", **event})
    return {"model": name, "version": version, "previous": champion, "promoted": True, "gate": asdict(result)}


def rollback(params: Params, to: str | None = None, why: str = "", family: str = "tagger") -> dict:
    """Point @champion back at ``to`` (default: the champion before the current one)."""
    client = _client(params)
    name = _name(params, family)
    current = _alias_version(client, name, "champion")
    if to is None:
        moves = [e for e in audit_log(client, name)
                 if e["action"] in ("promote", "forced_promote", "rollback") and e.get("version") == current]
        to = moves[-1].get("previous") if moves else None
        if to is None:
            raise PromotionRefused(f"{name}: no earlier champion to roll back to; name a version")
    client.get_model_version(name, to)                # fails clearly on an unknown version
    client.set_registered_model_alias(name, "champion", to)
    event = _record(client, name, {"action": "rollback", "version": to, "previous": current, "why": why})
    return {"model": name, "champion": to, "previous": current, "event": event}


def register_context_model(params: Params, why: str = "new training run") -> dict:
    """Log the pyfunc context model (audio + optional user/device/time) built from the current
    tagger and the serving split's user models, register it as a new version of
    ``registry.context_model_name`` with alias @challenger (same audit trail)."""
    import hashlib

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.serving.pyfunc import log_context_model

    p, name = params.paths, params.registry.context_model_name
    setup_mlflow(params.user_models.experiment)
    client = mlflow.MlflowClient()
    parts = [p.models / params.train.loss / "best.pt",
             *(p.user_models / params.serving.split / f for f in ("audio_user.pt", "audio_user_situation.pt"))]
    digest = hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest() for f in parts)).hexdigest()[:16]
    try:                                   # the same models registered before: reruns are no-ops
        same = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("fingerprint") == digest]
    except MlflowException:
        same = []
    if same:
        return {"model": name, "version": str(same[0].version), "run_id": same[0].run_id, "new_version": False}
    mels = np.load(p.features / "mels.npy", mmap_mode="r")
    streams = pd.read_parquet(p.streams / "streams.parquet")
    user_cols = _user_columns(streams)
    row = streams[streams["has_history"]].iloc[0]
    # two rows, so the signature marks what is optional: a mel with user features, device and time;
    # an audio file alone
    audio = pd.read_csv(p.tracks, dtype=str)["audio_path"].iloc[0]
    full = {"mel": np.asarray(mels[0], dtype=np.float32).tolist(), "audio_path": None,
            **{c: row[c] for c in user_cols}, "device": row["device"], "network": row["network"],
            "timestamp": row["event_timestamp"].isoformat(), "age": 30.0, "gender": "f"}
    bare = dict.fromkeys(full) | {"audio_path": str(p.audio_root / audio)}
    example = pd.DataFrame([full, bare])
    example["history_embedding"] = [list(map(float, row["history_embedding"])), None]
    with mlflow.start_run(run_name="context-model"):
        info = log_context_model(params, Path("."), params.serving.split, example)
        run_id = mlflow.active_run().info.run_id
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="audio + optional user/device/time -> context probabilities")
    version = str(mlflow.register_model(f"models:/{info.model_id}", name).version)
    client.set_model_version_tag(name, version, "fingerprint", digest)
    client.set_registered_model_alias(name, "challenger", version)
    _record(client, name, {"action": "register", "version": version, "run_id": run_id, "why": why})
    return {"model": name, "version": version, "run_id": run_id, "new_version": True}
