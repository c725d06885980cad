"""MLflow registry: register a trained tagger (or the pyfunc context model) as a new version with
alias ``@challenger``, and keep an audit trail of who did what, when and why.

The audit trail lives in the registry itself, as registered-model tags ``audit.NNNN`` holding one
JSON event each (action, versions, who, when, why, the gate's figures), so it follows the model to
whichever MLflow server holds it. Moving ``@champion`` is ctxtag.platform.promotion's.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ctxtag.config import Params
from ctxtag.platform import lineage
from ctxtag.vocabulary import MODEL_FAMILIES


class NoChampion(LookupError):
    """A family has no @champion (nothing registered and promoted yet)."""


class Unloadable(LookupError):
    """A registered version lacks the files (or their sha256) serving needs: registered in an older
    format, or its artifacts lost."""


def actor() -> str:
    """Who acts: CTXTAG_ACTOR (the Airflow task sets it to its DAG run) or the OS user."""
    return os.environ.get("CTXTAG_ACTOR") or getpass.getuser()


def open_client(params: Params):
    import mlflow

    from ctxtag.common.tracking import setup_mlflow

    setup_mlflow(params.train.experiment)
    return mlflow.MlflowClient()


def audit_log(client, name: str) -> list[dict]:
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith("audit."))]


def record(client, name: str, event: dict) -> dict:
    n = len(audit_log(client, name))
    event = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "who": actor(), **event}
    client.set_registered_model_tag(name, f"audit.{n + 1:04d}", json.dumps(event))
    return event


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        # only "no such alias / model" means none: a server that is down must not read as "no
        # champion yet", which would promote without the gate's comparison
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(exc):
            return None
        raise


def ensure_registered(client, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)


def make_challenger(client, name: str, version: str, run_id: str, why: str) -> None:
    """Point @challenger at ``version`` and audit it; a no-op when it already is (reruns)."""
    if alias_version(client, name, "challenger") != version:
        client.set_registered_model_alias(name, "challenger", version)
        record(client, name, {"action": "register", "version": version, "run_id": run_id, "why": why})


def register(params: Params, why: str = "new training run") -> dict:
    """Register the train.loss tagger as a new version with alias @challenger: its training run's
    checkpoint packaged as the tagger pyfunc (``_tagger_model``); a run already registered is not
    registered twice (reruns are idempotent)."""
    import mlflow

    client = open_client(params)
    name = params.registry.model_name
    run_file = params.paths.mlflow_run(params.train.loss)
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file}: no MLflow run for {params.train.loss}; train with log_mlflow: true")
    run_id = json.loads(run_file.read_text())["run_id"]
    ensure_registered(client, name, "Choi CNN audio context tagger (ICASSP 2020)")
    existing = [v for v in client.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    if existing:
        version = str(max(existing, key=lambda v: int(v.version)).version)
        created = False
    else:
        version = str(mlflow.register_model(f"models:/{_tagger_model(params, run_id)}", name).version)
        client.set_model_version_tag(name, version, "loss", params.train.loss)
        client.set_model_version_tag(name, version, lineage.TAG, lineage.as_tag(
            lineage.lineage(Path("."), [f"train@{params.train.loss}"], run_id)))
        created = True
    make_challenger(client, name, version, run_id, why)
    return {"model": name, "version": version, "run_id": run_id, "new_version": created}


def _tagger_model(params: Params, run_id: str) -> str:
    """The id of the run's tagger pyfunc (ctxtag.serving.pyfunc), logged into the run from the
    checkpoint the run saved (``checkpoint/best.pt``) the first time it is registered."""
    import mlflow
    import pandas as pd

    from ctxtag.audio import mel_set
    from ctxtag.serving.pyfunc import ARTIFACT_TAG, example_frame, log_tagger_model
    from ctxtag.stages.train import CHECKPOINT_ARTIFACT

    logged = mlflow.search_logged_models(filter_string=f"source_run_id='{run_id}'", output_format="list")
    ours = [m for m in logged if ARTIFACT_TAG + "tagger" in (m.tags or {})]
    if ours:
        return ours[-1].model_id
    client = mlflow.MlflowClient()
    if not client.list_artifacts(run_id, CHECKPOINT_ARTIFACT):
        raise FileNotFoundError(f"MLflow run {run_id} saved no checkpoint; train it again (`ctxtag train`)")
    checkpoint = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{CHECKPOINT_ARTIFACT}/best.pt"))
    p = params.paths
    mel = mel_set.read(p.features).mels[0]
    audio = pd.read_csv(p.tracks, dtype=str)["audio_path"].iloc[0]     # relative to the media root
    with mlflow.start_run(run_id=run_id):
        return log_tagger_model(params, checkpoint, example_frame(mel, audio)).model_id


def champion_checkpoint(params: Params, root: Path = Path(".")) -> tuple[Path, str]:
    """The registry's @champion tagger as a local checkpoint (state dict + metadata, which
    ctxtag.tagger.inference.load_cnn reads with weights_only=True: nothing in it runs code), and
    its "name/version" (``champion_files``)."""
    files, version = champion_files(params, "tagger", root)
    return files["tagger"], version


def champion_files(params: Params, family: str, root: Path = Path("."),
                   version: str | None = None) -> tuple[dict[str, Path], str]:
    """The files of ``family``'s registry @champion (or of ``version``), each checked against the
    sha256 recorded with its logged model, so what is served is what the gate promoted, and its
    "name/version". Both families are pyfuncs (ctxtag.serving.pyfunc) whose artifacts these are.

    tagger: {"tagger": its checkpoint};
    context: {part: file} for the user models it carries (ctxtag.serving.pyfunc.SERVED_PARTS, its
    pyfunc artifacts): what the API's /contexts and /recommend answer with; and "tagger", its own
    tagger checkpoint, which computes the track features those user models were trained on
    (ctxtag.platform.publication); embeddings: {"track_embeddings", "user_embeddings"}, the AE / UE
    tables cold-start recommendations rank by.
    A server's store is downloaded from; the local store's files are read where they lie."""
    import mlflow
    import yaml

    from ctxtag.common.io import file_sha256
    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.serving.pyfunc import ARTIFACT_TAG, SERVED_PARTS

    setup_mlflow(params.train.experiment, root)
    client = mlflow.MlflowClient()
    name = model_name(params, family)
    version = version or alias_version(client, name, "champion")
    if version is None:
        raise NoChampion(f"no @champion of {name} at {mlflow.get_tracking_uri()}: run `make demo`, "
                         "or `ctxtag release`")
    mv = client.get_model_version(name, version)
    # the logged model behind the version (a local store leaves model_id empty; source names it)
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    tags = mlflow.get_logged_model(model_id).tags
    location = client.get_model_version_download_uri(name, version)
    url = urlparse(location)

    def fetch(relative: str) -> Path:
        if url.scheme in ("", "file"):           # the local store's locations are project-relative
            return root / (url.path if url.scheme else location) / relative
        return Path(mlflow.artifacts.download_artifacts(f"{location}/{relative}"))   # s3://, mlflow-artifacts:/

    flavor = yaml.safe_load(fetch("MLmodel").read_text())["flavors"].get("python_function") or {}
    stored = {k: a["path"] for k, a in (flavor.get("artifacts") or {}).items()}
    parts = {"tagger": ("tagger",), "context": (*SERVED_PARTS, "tagger"),
             "embeddings": ("track_embeddings", "user_embeddings")}[family]
    wanted = {part: (stored.get(part), tags.get(ARTIFACT_TAG + part)) for part in parts}
    files = {}
    for part, (relative, expected) in wanted.items():
        if relative is None or expected is None:
            raise Unloadable(f"{name}/{version} was registered without {part} or its sha256; "
                              "register the current models again (`ctxtag release`)")
        local = fetch(relative)
        if not local.exists():
            raise Unloadable(f"{name}/{version}: {part} ({relative}) is missing from its artifacts")
        if file_sha256(local) != expected:
            raise ValueError(f"{name}/{version}: {local} does not match the sha256 registered with it")
        files[part] = local
    return files, f"{name}/{version}"


def register_context_model(params: Params, why: str = "new training run") -> dict:
    """Log the pyfunc context model (audio + optional user/device/time) built from the current
    tagger and the serving split's user models, register it as a new version of
    ``registry.context_model_name`` with alias @challenger (same audit trail)."""
    import pandas as pd

    from ctxtag.audio import mel_set
    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.context.artifacts import model_path
    from ctxtag.context.features import user_feature_columns
    from ctxtag.serving.pyfunc import SERVED_PARTS, log_context_model

    p = params.paths
    setup_mlflow(params.user_models.experiment)
    parts = [p.checkpoint(params.train.loss), *(model_path(p.user_models / params.serving.split, m) for m in SERVED_PARTS)]

    def log():
        mels = mel_set.read(p.features).mels
        streams = pd.read_parquet(p.streams_parquet)
        user_cols = user_feature_columns(streams)
        row = streams[streams["has_history"]].iloc[0]
        # two rows, so the signature marks what is optional: a mel with user features, device and
        # time; an audio file alone
        audio = pd.read_csv(p.tracks, dtype=str)["audio_path"].iloc[0]
        full = {"mel": np.asarray(mels[0], dtype=np.float32).tolist(), "audio_path": None,
                **{c: row[c] for c in user_cols}, "device": row["device"], "network": row["network"],
                "timestamp": row["event_timestamp"].isoformat(), "age": 30.0, "gender": "f"}
        bare = dict.fromkeys(full) | {"audio_path": audio}   # relative to the media root, as tracks.csv names it
        example = pd.DataFrame([full, bare])
        example["history_embedding"] = [list(map(float, row["history_embedding"])), None]
        return log_context_model(params, Path("."), params.serving.split, example)

    return _register_once(params.registry.context_model_name, "audio + optional user/device/time -> context probabilities",
                          parts, "context-model", log, [f"train@{params.train.loss}", "user_models"], why)


def _register_once(name: str, description: str, files: list[Path], run_name: str, log, stages: list[str],
                   why: str) -> dict:
    """What ``log()`` logs (in a run named ``run_name``) as a new version of ``name`` with alias
    @challenger, its lineage the DVC ``stages`` that made ``files``; unless the same ``files`` were
    registered before (their fingerprint, a version tag): reruns are no-ops."""
    import hashlib

    import mlflow
    from mlflow.exceptions import MlflowException

    from ctxtag.common.io import file_sha256

    client = mlflow.MlflowClient()
    digest = hashlib.sha256(b"".join(bytes.fromhex(file_sha256(f)) for f in files)).hexdigest()[:16]
    try:
        same = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("fingerprint") == digest]
    except MlflowException:
        same = []
    if same:
        return {"model": name, "version": str(same[0].version), "run_id": same[0].run_id, "new_version": False}
    with mlflow.start_run(run_name=run_name):
        info = log()
        run_id = mlflow.active_run().info.run_id
    ensure_registered(client, name, description)
    version = str(mlflow.register_model(f"models:/{info.model_id}", name).version)
    client.set_model_version_tag(name, version, "fingerprint", digest)
    client.set_model_version_tag(name, version, lineage.TAG, lineage.as_tag(lineage.lineage(Path("."), stages, run_id)))
    make_challenger(client, name, version, run_id, why)
    return {"model": name, "version": version, "run_id": run_id, "new_version": True}


def register_embeddings(params: Params, why: str = "new training run") -> dict:
    """Log Chen et al.'s served embeddings (the AE / UE tables of `ctxtag embeddings`: what
    cold-start recommendations rank by) as a pyfunc and register them as a new version of
    ``registry.embeddings_model_name`` with alias @challenger; the same tables registered before
    are not registered twice."""
    import pandas as pd

    from ctxtag.common.tracking import setup_mlflow
    from ctxtag.embeddings.artifacts import audio_branch_path
    from ctxtag.serving.pyfunc import log_embeddings_model

    p, cfg = params.paths, params.embeddings
    tables = [p.track_embeddings_parquet, p.user_embeddings_parquet]
    setup_mlflow(cfg.experiment)

    def log():
        first = {kind: pd.read_parquet(t, columns=[f"{kind}_id"]).iloc[0, 0]
                 for kind, t in zip(("track", "user"), tables, strict=True)}
        example = pd.DataFrame({"user_id": [str(first["user"]), None], "track_id": [None, str(first["track"])]})
        branches = {"user_branch": p.user_branch_pt,
                    "audio_branch": audio_branch_path(p.embeddings, cfg.best_model, cfg.best_duration)}
        return log_embeddings_model(params, *tables, example, {k: v for k, v in branches.items() if v.exists()})

    return _register_once(params.registry.embeddings_model_name,
                          "Chen et al. listening embeddings: user (UE) and track (AE) tables", tables,
                          "listening-embeddings", log, ["embeddings"], why)


def register_each(params: Params, why: str = "new training run") -> dict[str, dict]:
    """Every family's current models as a new version each (@challenger): the tagger, the context
    model built around it, and the listening embeddings where `ctxtag embeddings` produced them."""
    out = {"tagger": register(params, why=why), "context": register_context_model(params, why=why)}
    if params.paths.track_embeddings_parquet.exists() and params.paths.user_embeddings_parquet.exists():
        out["embeddings"] = register_embeddings(params, why=why)
    return out


def model_name(params: Params, family: str) -> str:
    if family not in MODEL_FAMILIES:
        raise ValueError(f"model family must be one of {MODEL_FAMILIES}, not {family!r}")
    return {"tagger": params.registry.model_name, "context": params.registry.context_model_name,
            "embeddings": params.registry.embeddings_model_name}[family]


def audit(params: Params, family: str = "tagger") -> dict:
    """The audit trail, and each version's aliases, MLflow run, lineage (git commit, DVC lock
    hashes of what produced it) and shadow agreement with the champion on live requests."""
    from ctxtag.serving.shadow import agreement

    name = model_name(params, family)
    client = open_client(params)
    aliases = client.get_registered_model(name).aliases or {}          # alias -> version
    versions = {str(v.version): {"aliases": sorted(a for a, n in aliases.items() if str(n) == str(v.version)),
                                 "run_id": v.run_id,
                                 "lineage": json.loads(v.tags[lineage.TAG]) if lineage.TAG in v.tags else None,
                                 "shadow": agreement(v.tags)}
                for v in client.search_model_versions(f"name='{name}'")}
    return {"model": name, "events": audit_log(client, name),
            "versions": dict(sorted(versions.items(), key=lambda kv: int(kv[0])))}
