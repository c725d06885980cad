import numpy as np
import pytest

from ctxtag.labelling.balance import balance


@pytest.fixture
def imbalanced() -> np.ndarray:
    rng = np.random.default_rng(3)
    p = np.array([0.6, 0.4, 0.2, 0.08, 0.05])
    y = (rng.random((3000, 5)) < p).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    return y


def test_deterministic_under_seed_and_seed_matters(imbalanced):
    a = balance(imbalanced, cap=None, seed=7)
    assert np.array_equal(a, balance(imbalanced, cap=None, seed=7))
    assert not np.array_equal(a, balance(imbalanced, cap=None, seed=8))


def test_every_context_reaches_the_cap_or_uses_all_it_has(imbalanced):
    cap = 300
    sel = balance(imbalanced, cap=cap, seed=0)
    got = imbalanced[sel].sum(0)
    available = imbalanced.sum(0)
    assert np.all(got >= np.minimum(cap, available))
    # the rarest context is only ever added to up to the cap: it ends exactly there
    rarest = np.argmin(available)
    assert got[rarest] == min(cap, available[rarest])


def test_default_cap_is_the_least_represented_context(imbalanced):
    sel = balance(imbalanced, cap=None, seed=0)
    least = imbalanced.sum(0).min()
    assert imbalanced[sel].sum(0).min() == least
    assert sel.sum() < len(imbalanced)            # the frequent contexts were thinned out


def test_balancing_reduces_imbalance(imbalanced):
    before = imbalanced.sum(0)
    after = imbalanced[balance(imbalanced, cap=None, seed=0)].sum(0)
    assert after.max() / after.min() < before.max() / before.min()
