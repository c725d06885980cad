import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctxtag.tagger.losses import weight_arrays, weighted_bce
from ctxtag.vocabulary import LOSS_CONFIGS


def test_equation_2_by_hand():
    z = torch.tensor([[2.0, -1.0]])
    y = torch.tensor([[1.0, 0.0]])
    pw, nw = torch.tensor([[0.5, 9.0]]), torch.tensor([[9.0, 0.25]])
    f = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    expected = -(0.5 * math.log(f[0]) + 0.25 * math.log(1 - f[1]))   # 9s multiply zero terms
    assert float(weighted_bce(z, y, pw, nw)) == pytest.approx(expected, rel=1e-6)


def test_unweighted_is_bce_summed_over_contexts():
    z, y = torch.randn(8, 15), (torch.rand(8, 15) < 0.3).float()
    ours = weighted_bce(z, y)
    ref = F.binary_cross_entropy(torch.sigmoid(z), y, reduction="sum") / 8
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_zero_negative_weight_removes_the_gradient_of_that_negative():
    z = torch.zeros(1, 2, requires_grad=True)
    y = torch.tensor([[0.0, 0.0]])
    weighted_bce(z, y, None, torch.tensor([[0.0, 1.0]])).backward()
    assert z.grad[0, 0] == 0 and z.grad[0, 1] > 0


def test_configurations_pick_the_right_weights():
    w = {k: np.full((2, 3), v) for k, v in
         [("neg_exact", 0.1), ("neg_ignore_zeros", 0.2), ("neg_pairwise", 0.3), ("pos_tfidf", 4.0)]}
    got = {c: weight_arrays(c, w) for c in LOSS_CONFIGS}
    assert got["none"] == (None, None)
    assert got["neg_exact"][0] is None and got["neg_exact"][1][0, 0] == 0.1
    assert got["neg_ignore_zeros"][1][0, 0] == 0.2
    assert got["both_exact"][0][0, 0] == 4.0 and got["both_exact"][1][0, 0] == 0.1
    assert got["both_ignore_zeros"][0][0, 0] == 4.0 and got["both_ignore_zeros"][1][0, 0] == 0.2
    with pytest.raises(ValueError, match="unknown loss"):
        weight_arrays("tfidf", w)
