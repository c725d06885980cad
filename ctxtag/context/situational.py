"""The situation predictor of ISMIR 2022: gradient-boosted trees on the stream's device, network,
local hour and weekday (cyclic), and the user's features -> the stream's context."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctxtag.config import UserModelConfig


def design(x: dict[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    return np.hstack([x[k] for k in inputs])


def fit(x_train: dict[str, np.ndarray], y_train: np.ndarray, x_val: dict[str, np.ndarray], y_val: np.ndarray,
        inputs: Sequence[str], cfg: UserModelConfig, seed: int):
    """Boosting stops early on the validation streams (the same ones the neural models use);
    validation streams of a context absent from training cannot be scored by the booster and
    are left out of that early-stopping check only."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    seen = np.isin(y_val, y_train)
    x_val, y_val = {k: v[seen] for k, v in x_val.items()}, y_val[seen]
    model = HistGradientBoostingClassifier(
        max_iter=cfg.gbt_max_iter, learning_rate=cfg.gbt_learning_rate, max_leaf_nodes=cfg.gbt_max_leaf_nodes,
        early_stopping=len(y_val) > 0, n_iter_no_change=20, random_state=seed)
    val = {"X_val": design(x_val, inputs), "y_val": y_val} if len(y_val) else {}
    model.fit(design(x_train, inputs), y_train, **val)
    model.inputs = list(inputs)
    return model


def predict(model, x: dict[str, np.ndarray], n_contexts: int) -> np.ndarray:
    """Probabilities over all contexts (a context absent from training gets probability 0)."""
    proba = model.predict_proba(design(x, model.inputs))
    out = np.zeros((len(proba), n_contexts))
    out[:, model.classes_.astype(int)] = proba
    return out
