"""Numeric inputs of the stream models, in named blocks, from the joined stream frame.

One place turns the Feast columns into matrices, for training, evaluation and serving alike:
- audio: the tagger's 256-d embedding of the track (the audio branch's input)
- audio_probs: the tagger's context probabilities (the audio-only model's output)
- user: listening-history embedding, per-context shares, log stream count
- situation: the stream's device and network (one-hot) and its local hour and weekday as sin/cos,
  the user's device/network shares and circular hour/weekday means, age and gender
Missing features (a user's first day, no snapshot yet; an unknown age; a column a serving request
does not carry) become 0 with an indicator column, so no stream is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

STREAM_TIME = ("stream_hour_sin", "stream_hour_cos", "stream_weekday_sin", "stream_weekday_cos")
PROFILE_TIME = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")


def user_feature_columns(frame: pd.DataFrame) -> list[str]:
    """The user features (as Feast serves them) among a frame's columns: the context model's
    optional user inputs."""
    return [c for c in frame.columns if c.startswith(("ctx_share_", "device_share_", "network_share_"))
            or c in ("n_streams", "history_embedding", *PROFILE_TIME)]


def _stack(col: pd.Series, dim: int) -> np.ndarray:
    """A column of arrays -> (n, dim) float32; missing entries are zeros."""
    out = np.zeros((len(col), dim), dtype=np.float32)
    ok = col.notna().to_numpy()
    if ok.any():
        out[ok] = np.stack(col[ok].to_numpy()).astype(np.float32)
    return out


def _one_hot(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    codes = pd.Categorical(values, categories=list(categories)).codes
    return (codes[:, None] == np.arange(len(categories))[None, :]).astype(np.float32)


def blocks(frame: pd.DataFrame, contexts: Sequence[str], devices: Sequence[str], networks: Sequence[str],
           genders: Sequence[str], history_dim: int, audio_dim: int = 256) -> dict[str, np.ndarray]:
    m = len(contexts)
    needed = ["n_streams", "history_embedding", "audio_embedding", "context_probs", "device", "network", "age",
              "gender", *STREAM_TIME, *[f"ctx_share_{c}" for c in contexts],
              *[f"device_share_{d}" for d in devices], *[f"network_share_{n}" for n in networks], *PROFILE_TIME]
    missing = [c for c in needed if c not in frame]
    if missing:                       # a serving request carries only some inputs: the rest are missing
        frame = frame.assign(**dict.fromkeys(missing, None))
    has_history = frame["n_streams"].notna().to_numpy()[:, None].astype(np.float32)
    shares = frame[[f"ctx_share_{c}" for c in contexts]].fillna(0).to_numpy(np.float32)
    user = np.hstack([_stack(frame["history_embedding"], history_dim), shares,
                      np.log1p(frame["n_streams"].fillna(0).to_numpy(np.float32))[:, None], has_history])
    profile = frame[[f"device_share_{d}" for d in devices] + [f"network_share_{n}" for n in networks]
                    + list(PROFILE_TIME)].astype("float64").fillna(0).to_numpy(np.float32)
    age = pd.to_numeric(frame["age"], errors="coerce")
    situation = np.hstack([
        _one_hot(frame["device"], devices), _one_hot(frame["network"], networks),
        frame[list(STREAM_TIME)].astype("float64").fillna(0).to_numpy(np.float32),
        profile,
        (age.fillna(0).to_numpy(np.float32) / 100.0)[:, None], age.isna().to_numpy()[:, None].astype(np.float32),
        _one_hot(frame["gender"], genders),
    ])
    return {
        "audio": _stack(frame["audio_embedding"], audio_dim),
        "audio_probs": _stack(frame["context_probs"], m),
        "user": user,
        "situation": situation,
    }


def targets(frame: pd.DataFrame, contexts: Sequence[str]) -> np.ndarray:
    """The stream's context as a class index."""
    codes = pd.Categorical(frame["context"], categories=list(contexts)).codes
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} stream(s) carry a context outside params.contexts")
    return codes.astype(np.int64)
