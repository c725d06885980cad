"""Recommendations from the split network: the same probabilities as the whole tagger; two stages
re-score their candidates exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxtag.context.model import ContextTagger
from ctxtag.serving.recommend import Recommender, RetrievalConfig


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    model = ContextTagger({"audio": 32, "user": 9}, 5, audio_hidden=16, user_hidden=8, fused_hidden=12).eval()
    rng = np.random.default_rng(0)
    model.fit_scaling({"audio": rng.normal(size=(50, 32)), "user": rng.normal(size=(50, 9))})
    audio = rng.normal(size=(3000, 32)).astype(np.float32)
    return model, [f"t{i}" for i in range(len(audio))], audio, rng.normal(size=(4, 9)).astype(np.float32)


def _user_term(model, user):
    return model.fused_term("user", torch.from_numpy(user[None])).numpy()[0]


def test_split_network_equals_the_tagger(world):
    model, ids, audio, users = world
    rec = Recommender.from_model(model, ids, audio)
    for user in users:
        whole = model.predict_proba({"audio": torch.from_numpy(audio),
                                     "user": torch.from_numpy(np.repeat(user[None], len(audio), 0))}).numpy()
        np.testing.assert_allclose(rec.probabilities(np.arange(len(ids)), _user_term(model, user)), whole, atol=1e-6)
        got, scores = rec.recommend(_user_term(model, user), 2, 10)
        expect = np.argsort(-whole[:, 2], kind="stable")[:10]
        assert got == [ids[i] for i in expect]
        np.testing.assert_allclose(scores, whole[expect, 2], atol=1e-6)


def test_two_stages_rescore_their_candidates_exactly(world):
    model, ids, audio, users = world
    exact = Recommender.from_model(model, ids, audio)
    two = Recommender.from_model(model, ids, audio, RetrievalConfig(exhaustive_max=500, candidates=300, nprobe=8))
    assert exact.kind == "exhaustive" and two.kind.startswith("two-stage")
    u = _user_term(model, users[0])
    got, scores = two.recommend(u, 1, 20)
    assert len(got) == 20 and len(set(got)) == 20 and list(scores) == sorted(scores, reverse=True)
    rows = np.array([ids.index(t) for t in got])
    np.testing.assert_allclose(scores, exact.probabilities(rows, u)[:, 1], atol=1e-6)
    # with every list probed and every track a candidate, the two stages are the exhaustive answer
    full = Recommender.from_model(model, ids, audio, RetrievalConfig(exhaustive_max=500, candidates=len(ids),
                                                                      nprobe=10_000))
    assert full.recommend(u, 1, 20)[0] == exact.recommend(u, 1, 20)[0]


def test_an_empty_catalogue_recommends_nothing(world):
    model, _, audio, users = world
    rec = Recommender.from_model(model, [], audio[:0])
    assert len(rec) == 0 and rec.recommend(_user_term(model, users[0]), 0, 5)[0] == []
