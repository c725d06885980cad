"""The flattened forest predicts what scikit-learn's booster predicts, from plain arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from ctxtag.context.situational import Forest, compile_forest


def _fit(n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 7)).astype(np.float32)
    y = (x[:, 0] * 2 + x[:, 1] ** 2 + rng.normal(scale=0.5, size=600)).argsort().argsort() * n_classes // 600
    x[rng.random(x.shape) < 0.05] = np.nan             # missing values take the learnt side
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=seed).fit(x, y)
    return model, x, rng.normal(size=(300, 7)).astype(np.float32)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_forest_equals_the_booster(n_classes, tmp_path):
    model, _, x_new = _fit(n_classes)
    x_new[::7, 3] = np.nan
    forest = compile_forest(model, ["a"])
    # the same trees added in the same order: the booster's raw scores to the last bit
    np.testing.assert_array_equal(forest.raw(x_new), model._raw_predict(x_new))
    np.testing.assert_allclose(forest.predict_proba(x_new), model.predict_proba(x_new), rtol=0, atol=1e-12)
    assert forest.n_iter == model.n_iter_
    # saved and loaded as plain arrays (no pickle), it predicts the same, one row or many
    forest.save(tmp_path / "f.npz")
    again = Forest.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.predict_proba(x_new), forest.predict_proba(x_new))
    np.testing.assert_allclose(again.predict_proba(x_new[:1]), model.predict_proba(x_new[:1]), atol=1e-12)
    assert again.inputs == ["a"]


def test_a_pickle_is_not_a_forest(tmp_path):
    import pickle

    (tmp_path / "f.npz").write_bytes(pickle.dumps({"feature": [1]}))
    with pytest.raises(ValueError, match="pickle"):
        Forest.load(tmp_path / "f.npz")
