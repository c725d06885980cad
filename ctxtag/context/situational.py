"""The situation predictor of ISMIR 2022: gradient-boosted trees on the stream's device, network,
local hour and weekday (cyclic), and the user's features -> the stream's context.

scikit-learn fits the booster; its trees are then flattened into one ``Forest`` of plain arrays,
which is what predicts (training evaluation and serving alike), is saved (``.npz``, loaded without
pickle, so no code runs from a model file) and is served. One compiled walk over all trees gives
scikit-learn's raw scores to the last bit without its per-tree OpenMP calls: a row of 975 trees
(65 iterations x 15 classes) costs ~7 us instead of ~9 ms (~0.4 ms for the same walk in numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ctxtag.config import UserModelConfig


def design(x: dict[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    return np.hstack([x[k] for k in inputs])


@dataclass
class Forest:
    """All trees of a boosted classifier as flat node arrays (tree t starts at ``roots[t]``; tree t
    adds to class column ``t % n_columns``). A leaf is its own left and right child; ``depth`` is
    the deepest leaf's."""

    feature: np.ndarray        # (nodes,) int64
    threshold: np.ndarray      # (nodes,) float64: go left when x <= threshold
    missing_left: np.ndarray   # (nodes,) bool: where a NaN goes
    left: np.ndarray           # (nodes,) int64
    right: np.ndarray          # (nodes,) int64
    value: np.ndarray          # (nodes,) float64: the leaf's raw score
    roots: np.ndarray          # (trees,) int64
    baseline: np.ndarray       # (n_columns,) float64
    classes: np.ndarray        # (n_classes,) int64: the context index of each probability column
    inputs: list[str]
    depth: int

    @property
    def n_iter(self) -> int:
        return len(self.roots) // len(self.baseline)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (n, n_columns): baseline + every tree's leaf value, added in scikit-learn's
        order (iteration by iteration), so the sums are its sums to the last bit."""
        x = np.ascontiguousarray(x, dtype=np.float64)          # the booster compares in float64 too
        out = np.empty((len(x), len(self.baseline)))
        _walk(x, self.feature, self.threshold, self.missing_left, self.left, self.right, self.value, self.roots,
              self.baseline, out)
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's link: softmax over classes, or the sigmoid for two classes."""
        raw = self.raw(x)
        if raw.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        from ctxtag.common.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, inputs=np.array(self.inputs), depth=np.array(self.depth),
                     **{k: getattr(self, k) for k in ("feature", "threshold", "missing_left", "left", "right",
                                                      "value", "roots", "baseline", "classes")})

    @classmethod
    def load(cls, path: Path) -> Forest:
        """Plain arrays only (allow_pickle=False): a model file cannot run code."""
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(inputs=[str(s) for s in arrays.pop("inputs")], depth=int(arrays.pop("depth")), **arrays)


@numba.njit(cache=True, nogil=True)
def _walk(x, feature, threshold, missing_left, left, right, value, roots, baseline, out):
    """Every row down every tree, as scikit-learn's predictor walks one: NaN goes where the node
    learnt to send missing values, else left when x <= threshold; a leaf is its own left child.
    Compiled (numba): a numpy walk pays a call per level over all 975 trees, this one ~10 ns a node."""
    cols = baseline.shape[0]
    for i in range(x.shape[0]):
        out[i, :] = baseline
        for t in range(roots.shape[0]):
            node = roots[t]
            while left[node] != node:
                v = x[i, feature[node]]
                go_left = missing_left[node] if np.isnan(v) else v <= threshold[node]
                node = left[node] if go_left else right[node]
            out[i, t % cols] += value[node]


def compile_forest(model, inputs: Sequence[str]) -> Forest:
    """A fitted HistGradientBoostingClassifier (numeric features, no categorical splits) as a Forest."""
    trees = [p.nodes for it in model._predictors for p in it]   # iteration-major, class-minor
    if any(t["is_categorical"].any() for t in trees):
        raise ValueError("categorical splits are not supported by the flattened forest")
    sizes = np.array([len(t) for t in trees])
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    nodes = np.concatenate(trees)
    offset = np.repeat(roots, sizes)
    leaf = nodes["is_leaf"].astype(bool)
    own = np.arange(len(nodes), dtype=np.int64)
    return Forest(
        feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=np.where(leaf, own, nodes["left"].astype(np.int64) + offset),
        right=np.where(leaf, own, nodes["right"].astype(np.int64) + offset),
        value=np.where(leaf, nodes["value"], 0.0),
        roots=roots,
        baseline=np.asarray(model._baseline_prediction, dtype=np.float64).ravel(),
        classes=np.asarray(model.classes_).astype(np.int64),
        inputs=list(inputs),
        depth=int(nodes["depth"].max()) if len(nodes) else 0,
    )


def fit(x_train: dict[str, np.ndarray], y_train: np.ndarray, x_val: dict[str, np.ndarray], y_val: np.ndarray,
        inputs: Sequence[str], cfg: UserModelConfig, seed: int) -> Forest:
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
    return compile_forest(model, inputs)


def predict(model: Forest, x: dict[str, np.ndarray], n_contexts: int) -> np.ndarray:
    """Probabilities over all contexts (a context absent from training gets probability 0)."""
    proba = model.predict_proba(design(x, model.inputs))
    out = np.zeros((len(proba), n_contexts))
    out[:, model.classes] = proba
    return out
