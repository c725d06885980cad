"""Chen et al.'s losses: Eq. 3 hinge, Multi softmax, Basic-Binary."""

import torch

from ctxtag.embeddings.losses import basic_binary, max_margin_hinge, multi_softmax


def test_max_margin_hinge_is_eq_3_summed_over_negatives():
    sim = torch.tensor([[0.9, 0.1, 0.8, 0.95], [0.5, 0.2, 0.1, 0.0]])
    # row 1: max(0, .2 - .9 + .1) + max(0, .2 - .9 + .8) + max(0, .2 - .9 + .95) = 0 + .1 + .25
    # row 2: every negative is more than the margin below the positive
    torch.testing.assert_close(max_margin_hinge(sim, 0.2), torch.tensor((0.35 + 0.0) / 2))
    assert max_margin_hinge(sim[1:], 0.2) == 0
    assert max_margin_hinge(sim[1:], 0.4) > 0                       # a wider margin bites


def test_multi_softmax_and_basic_binary_prefer_the_right_ordering():
    scale, bias = torch.tensor(5.0), torch.tensor(0.0)
    good, bad = torch.tensor([[0.9, -0.5]]), torch.tensor([[-0.5, 0.9]])
    assert multi_softmax(good, scale) < multi_softmax(bad, scale)
    liked = torch.tensor([1, 0])
    assert basic_binary(torch.tensor([[0.8], [-0.8]]), liked, scale, bias) < \
        basic_binary(torch.tensor([[-0.8], [0.8]]), liked, scale, bias)
