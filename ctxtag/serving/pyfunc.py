"""The MLflow pyfuncs of the registered families: the context model — audio (or a mel) plus,
optionally, the user's features and the stream's device and time -> context probabilities —, the
tagger, the same class with the CNN alone (audio or a mel -> context probabilities), and the
listening embeddings (ListeningEmbeddings: a user or track id -> its 40-d embedding).

Logged as models from code (ctxtag/serving/pyfunc_code.py, pyfunc_embeddings_code.py, with the
ctxtag package as their code path): loading one runs that declared code and unpickles nothing; its weights are state dicts and
plain arrays, read with torch.load(weights_only=True) / allow_pickle=False, each file's sha256 a tag
of the logged model (ARTIFACT_TAG + its name), checked before serving (ctxtag.platform.registry).

    input rows:  mel (96 x frames, nested lists) or audio_path;
                 optional user features as Feast serves them (n_streams, ctx_share_*, history_embedding,
                 device_share_*, network_share_*, hour_sin, ...), optional device, network,
                 timestamp (ISO 8601 with offset), age, gender
    output:      one probability column per context

``audio_path`` names a file under the media root — $CTXTAG_MEDIA_ROOT, else the params'
``paths.audio_root`` from where the model is loaded — relative to it or absolute inside it; a path
that leaves it (``..``, another absolute path) is refused before anything is opened, so request
data never reads an arbitrary local file (symbolic links inside the root are the operator's).

A row with user features and a device/time goes through the joint audio+user+device/time model,
one with user features only through the user-aware tagger, one with neither through the audio CNN
itself (its sigmoid outputs). Any serving stack that loads pyfuncs gets the same answer as
`ctxtag serve`, because the feature assembly is the training code (ctxtag.context.features).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

try:
    from mlflow.pyfunc import PythonModel
except ImportError:                                  # keeps `import ctxtag.serving.pyfunc` cheap in docs builds
    PythonModel = object


MEDIA_ROOT_ENV = "CTXTAG_MEDIA_ROOT"     # where a loaded context model may read audio_path files
# the user models a registered context model carries (pyfunc artifacts, each with its sha256 as a
# tag of the logged model: ARTIFACT_TAG + name), which the API loads from the @champion
SERVED_PARTS = ("audio_user", "audio_user_situation", "situational")
ARTIFACT_TAG = "sha256."


class ContextModel(PythonModel):
    def load_context(self, context) -> None:
        from ctxtag.audio.melspec import LogMel
        from ctxtag.config import params_from_dict
        from ctxtag.context.artifacts import load_tagger
        from ctxtag.tagger.inference import load_cnn

        self.params = params_from_dict(json.loads(Path(context.artifacts["params"]).read_text()))
        self.cnn, _ = load_cnn(Path(context.artifacts["tagger"]))
        # the tagger family carries no user models: every row goes through the CNN alone
        self.user_aware, self.joint = (load_tagger(Path(context.artifacts[part])) if part in context.artifacts
                                       else None for part in ("audio_user", "audio_user_situation"))
        self.frontend = LogMel(self.params.audio).eval()
        self.media_root = Path(os.path.abspath(os.environ.get(MEDIA_ROOT_ENV) or self.params.paths.audio_root))

    def _media(self, name) -> Path:
        """The file ``audio_path`` names, if it lies under the media root (compared after
        normalising ``..``, before anything is opened); ValueError otherwise."""
        if not isinstance(name, str) or not name:
            raise ValueError("a row needs a mel or an audio_path")
        path = Path(os.path.normpath(self.media_root / name))
        if not path.is_relative_to(self.media_root):
            raise ValueError(f"audio_path {name!r} is outside the media root (${MEDIA_ROOT_ENV})")
        return path

    def _mels(self, frame: pd.DataFrame):
        import torch

        from ctxtag.audio.decode import load_clip

        mels, decoded = [], {}                        # a file repeated across rows is decoded once
        for i in range(len(frame)):
            mel = frame["mel"].iat[i] if "mel" in frame else None
            if mel is not None and not (isinstance(mel, float) and np.isnan(mel)):
                mels.append(torch.as_tensor(np.asarray(mel, dtype=np.float32)))
                continue
            path = self._media(frame["audio_path"].iat[i])
            if path not in decoded:
                clip = load_clip(path, self.params.audio)
                decoded[path] = self.frontend(torch.from_numpy(clip)[None])[0]
            mels.append(decoded[path])
        return torch.stack(mels)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch

        from ctxtag.context import train as user_train
        from ctxtag.context.features import blocks
        from ctxtag.context.streams import situation

        p, frame = self.params, model_input.reset_index(drop=True).copy()
        with torch.no_grad():
            mel = self._mels(frame)
            emb = self.cnn.embed(mel)
            audio_probs = torch.sigmoid(self.cnn.head(emb)).numpy()
        out = audio_probs.copy()
        has_user = frame["n_streams"].notna().to_numpy() if "n_streams" in frame and self.user_aware is not None \
            else np.zeros(len(frame), bool)
        has_situation = has_user & (frame["device"].notna().to_numpy() if "device" in frame else False)
        if has_user.any():
            frame["audio_embedding"] = list(emb.numpy())
            frame["context_probs"] = list(audio_probs)
            # each row keeps its own UTC offset (time of day is local), so parse one by one
            raw = frame["timestamp"] if "timestamp" in frame else pd.Series([None] * len(frame))
            stamps = [pd.Timestamp(t) if isinstance(t, str) and t else pd.NaT for t in raw]
            ev = pd.DataFrame({"event_timestamp": pd.to_datetime([t.tz_convert("UTC") if pd.notna(t) and t.tzinfo
                                                                 else t for t in stamps], utc=True),
                               "utc_offset_min": [t.utcoffset().total_seconds() / 60 if pd.notna(t) and t.tzinfo else 0
                                                  for t in stamps]})
            frame = pd.concat([frame, situation(ev).fillna(0.0)], axis=1)
            x = blocks(frame, p.contexts, p.logs.devices, p.logs.networks, p.logs.genders, p.user_models.history_dim)
            rows = np.nonzero(has_user & ~has_situation)[0]
            if len(rows):
                out[rows] = user_train.predict(self.user_aware, {k: v[rows] for k, v in x.items()})
            rows = np.nonzero(has_situation)[0]
            if len(rows):
                out[rows] = user_train.predict(self.joint, {k: v[rows] for k, v in x.items()})
        return pd.DataFrame(out, columns=list(p.contexts))


class ListeningEmbeddings(PythonModel):
    """Chen et al.'s served embeddings (the tables `ctxtag embeddings` computed with its best model):
    rows with a ``user_id`` (UE) or a ``track_id`` (AE) -> the 40-d listening embedding as columns
    e0..e39, NaN where the id is unknown. Cosine similarity of a UE and an AE ranks new releases."""

    def load_context(self, context) -> None:
        self.tables = {}
        for kind in ("track", "user"):
            t = pd.read_parquet(context.artifacts[f"{kind}_embeddings"], columns=[f"{kind}_id", "listening_embedding"])
            self.tables[kind] = (pd.Index(t[f"{kind}_id"].astype(str)),
                                 np.stack(t["listening_embedding"].to_numpy()).astype(np.float32))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = model_input.reset_index(drop=True)
        dim = self.tables["track"][1].shape[1]
        out = np.full((len(frame), dim), np.nan, np.float32)
        for kind, (index, matrix) in self.tables.items():
            if f"{kind}_id" not in frame:
                continue
            ids = frame[f"{kind}_id"]
            pos = np.where(ids.notna().to_numpy(), index.get_indexer(ids.astype(str)), -1)
            out[pos >= 0] = matrix[pos[pos >= 0]]
        return pd.DataFrame(out, columns=[f"e{i}" for i in range(dim)])


def log_context_model(params, root: Path, split: str, example: pd.DataFrame):
    """Log the context model (with its signature and an input example) in the active MLflow run."""
    from ctxtag.context.artifacts import model_path

    models = root / params.paths.user_models / split
    # the situational GBT is not used by predict: it is the API's /contexts model, carried so that
    # one registered version holds every part the API serves (ctxtag.serving.service)
    parts = {"tagger": root / params.paths.checkpoint(params.train.loss),
             **{part: model_path(models, part) for part in SERVED_PARTS}}
    return log_pyfunc(params, "context_model", parts, example)


def log_tagger_model(params, checkpoint: Path, example: pd.DataFrame):
    """Log the tagger (the CNN of ``checkpoint`` behind the front-end) in the active MLflow run."""
    return log_pyfunc(params, "model", {"tagger": checkpoint}, example)


def log_embeddings_model(params, track_table: Path, user_table: Path, example: pd.DataFrame,
                         branches: dict[str, Path] | None = None):
    """Log the listening embeddings (ListeningEmbeddings) in the active MLflow run, with the
    branches that computed the tables (``branches``: their state dicts, sha256-tagged like every
    artifact, so a version holds the models as well as what they served)."""
    return log_pyfunc(params, "listening_embeddings",
                      {"track_embeddings": track_table, "user_embeddings": user_table, **(branches or {})},
                      example, model=ListeningEmbeddings, code="pyfunc_embeddings_code.py",
                      requirements=("mlflow", "numpy", "pandas", "pyarrow"))


def example_frame(mel: np.ndarray, audio_path: str) -> pd.DataFrame:
    """Two input rows: a mel, and an audio file relative to the media root (so the signature marks
    both optional)."""
    return pd.DataFrame({"mel": [np.asarray(mel, dtype=np.float32).tolist(), None], "audio_path": [None, audio_path]})


# what the packaged ctxtag code imports to load and run the model (the tagger's front-end and
# CNN, the user models and the situational forest's compiled walk, audio decoding)
CONTEXT_MODEL_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "pyarrow", "scipy", "torch",
                              "scikit-learn", "numba", "soundfile", "soxr", "pyyaml")


def log_pyfunc(params, name: str, parts: dict[str, Path], example: pd.DataFrame, model=None,
               code: str = "pyfunc_code.py", requirements: tuple[str, ...] = CONTEXT_MODEL_REQUIREMENTS):
    """``parts`` (model files) and the params as artifacts, ``model`` (ContextModel) as code
    (``code``, models from code: nothing is pickled), the signature inferred from one predict on
    ``example``."""
    import dataclasses
    import tempfile
    from types import SimpleNamespace

    import mlflow
    from mlflow.models import infer_signature

    from ctxtag.common.io import file_sha256
    from ctxtag.common.tracking import pinned_requirements

    with tempfile.TemporaryDirectory() as tmp:          # logged as an artifact, never into a DVC output
        params_file = Path(tmp) / "pyfunc_params.json"
        params_file.write_text(json.dumps(dataclasses.asdict(params), default=str))
        artifacts = {"params": str(params_file), **{k: str(v) for k, v in parts.items()}}
        model, ctx = (model or ContextModel)(), SimpleNamespace(artifacts=artifacts)
        model.load_context(ctx)                          # predict once: the output schema
        signature = infer_signature(example, model.predict(ctx, example))
        return mlflow.pyfunc.log_model(name=name, python_model=str(Path(__file__).with_name(code)),
                                       artifacts=artifacts, signature=signature, input_example=example,
                                       tags={ARTIFACT_TAG + k: file_sha256(Path(v)) for k, v in artifacts.items()},
                                       code_paths=[str(Path(__file__).parents[1])],   # the ctxtag package
                                       pip_requirements=pinned_requirements(*requirements))
