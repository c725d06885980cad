"""The user-aware tagger and the situational GBT learn the signal their inputs carry."""

import numpy as np
import pytest
import torch

from ctxtag.config import UserModelConfig
from ctxtag.context import situational
from ctxtag.context import train as user_train
from ctxtag.context.model import ContextTagger

CFG = UserModelConfig(epochs=40, patience=5, batch_size=64)


def _data(n, seed):
    """Context = the user's favourite (user block) unless the device says 'car' (situation)."""
    rng = np.random.default_rng(seed)
    fav = rng.integers(0, 3, n)
    car = rng.random(n) < 0.3
    x = {"audio": rng.normal(size=(n, 8)).astype(np.float32),
         "user": np.eye(4, dtype=np.float32)[fav] + rng.normal(0, .1, (n, 4)).astype(np.float32),
         "situation": np.stack([car, ~car], 1).astype(np.float32)}
    return x, np.where(car, 3, fav)


@pytest.fixture(scope="module")
def data():
    return _data(1500, 0), _data(300, 1), _data(600, 2)


def test_a_branch_that_carries_the_signal_makes_the_difference(data):
    (xt, yt), (xv, yv), (xe, ye) = data
    acc = {}
    for inputs in (("audio", "user"), ("audio", "user", "situation")):
        model, history = user_train.fit(xt, yt, xv, yv, inputs, 4, CFG, seed=0)
        acc[inputs] = (user_train.predict(model, xe).argmax(1) == ye).mean()
        assert history[-1]["epoch"] <= CFG.epochs
    assert acc[("audio", "user", "situation")] > 0.95
    assert acc[("audio", "user")] < 0.8              # blind to the car


def test_probabilities_sum_to_one_and_scaling_is_part_of_the_model(data):
    (xt, yt), (xv, yv), (xe, _) = data
    model, _ = user_train.fit(xt, yt, xv, yv, ("user",), 4, UserModelConfig(epochs=2), seed=0)
    p = user_train.predict(model, xe)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    state = model.state_dict()
    assert torch.allclose(state["branches.user.norm.mean"], torch.from_numpy(xt["user"].mean(0)))
    clone = ContextTagger({"user": 4}, 4)
    clone.load_state_dict(state)
    clone.eval()
    np.testing.assert_allclose(user_train.predict(clone, xe), p, rtol=1e-5)


def test_training_is_reproducible(data):
    (xt, yt), (xv, yv), (xe, _) = data
    cfg = UserModelConfig(epochs=3)
    a = user_train.predict(user_train.fit(xt, yt, xv, yv, ("user",), 4, cfg, seed=5)[0], xe)
    b = user_train.predict(user_train.fit(xt, yt, xv, yv, ("user",), 4, cfg, seed=5)[0], xe)
    np.testing.assert_array_equal(a, b)


def test_situational_gbt_learns_device_and_user(data):
    (xt, yt), (xv, yv), (xe, ye) = data
    model = situational.fit(xt, yt, xv, yv, ("situation", "user"), CFG, seed=0)
    p = situational.predict(model, xe, 4)
    assert p.shape == (len(ye), 4) and (p.argmax(1) == ye).mean() > 0.95


def test_situational_gbt_covers_contexts_missing_from_training(data):
    (xt, yt), (xv, yv), (xe, _) = data
    keep = yt != 2
    model = situational.fit({k: v[keep] for k, v in xt.items()}, yt[keep], xv, yv, ("situation", "user"), CFG, 0)
    p = situational.predict(model, xe, 4)
    assert (p[:, 2] == 0).all() and np.allclose(p.sum(1), 1)
