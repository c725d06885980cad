"""Recommendations from the split network: the same probabilities as the whole tagger; two stages
re-score their candidates exactly, their lists are the exact top tracks of each prototype, and a
saved catalogue is the same catalogue, mapped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxtag.context.model import ContextTagger
from ctxtag.serving.recommend import Recommender, RetrievalConfig, log_odds, prototype_lists


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    model = ContextTagger({"audio": 32, "user": 9}, 5, audio_hidden=16, user_hidden=8, fused_hidden=12).eval()
    rng = np.random.default_rng(0)
    model.fit_scaling({"audio": rng.normal(size=(50, 32)), "user": rng.normal(size=(50, 9))})
    audio = rng.normal(size=(3000, 32)).astype(np.float32)
    return model, [f"t{i}" for i in range(len(audio))], audio, rng.normal(size=(40, 9)).astype(np.float32)


def _user_term(model, user):
    return _user_terms(model, user[None])[0]


def _user_terms(model, users):
    with torch.no_grad():
        return model.fused_term("user", torch.from_numpy(users)).numpy()


TWO_STAGE = RetrievalConfig(exhaustive_max=500, prototypes=8, per_list=60, probes=2)


def test_split_network_equals_the_tagger(world):
    model, ids, audio, users = world
    rec = Recommender.build(model, ids, audio, _user_terms(model, users))
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
    terms = _user_terms(model, users)
    exact = Recommender.build(model, ids, audio, terms)
    two = Recommender.build(model, ids, audio, terms, TWO_STAGE, chunk=700)
    assert exact.kind == "exhaustive" and two.kind.startswith("two-stage") and two.lists.shape == (8, 5, 60)
    u = terms[0]
    got, scores = two.recommend(u, 1, 20)
    assert len(got) == 20 and len(set(got)) == 20 and list(scores) == sorted(scores, reverse=True)
    rows = np.array([ids.index(t) for t in got])
    np.testing.assert_allclose(scores, exact.probabilities(rows, u)[:, 1], atol=1e-6)
    # each list is its prototype's exact top tracks, merged across chunks
    probs = exact.probabilities(np.arange(len(ids)), two.prototypes[3])
    for c in range(5):
        np.testing.assert_allclose(probs[two.lists[3, c], c], np.sort(probs[:, c])[::-1][:60], atol=1e-6)
    # a user who is a prototype gets exactly the exhaustive answer (its list holds its top 20)
    proto_user = two.prototypes[5]
    assert two.recommend(proto_user, 2, 20)[0] == exact.recommend(proto_user, 2, 20)[0]
    # with every prototype probed and every track in the lists, the two stages are the exhaustive answer
    full = Recommender.build(model, ids, audio, terms, RetrievalConfig(500, 8, len(ids), 8))
    assert full.recommend(u, 1, 20)[0] == exact.recommend(u, 1, 20)[0]


def test_lists_do_not_depend_on_the_chunking(world):
    model, ids, audio, users = world
    rec = Recommender.build(model, ids, audio, _user_terms(model, users), TWO_STAGE)
    head = rec.head_w, rec.head_b, rec.fused_b
    whole, chunked = (prototype_lists(rec.terms, rec.prototypes, *head, 60, chunk=c) for c in (3000, 37))
    for p in range(len(rec.prototypes)):     # the same scores (rows may swap where floats tie)
        probs = rec.probabilities(np.arange(len(ids)), rec.prototypes[p])
        for c in range(5):
            np.testing.assert_allclose(probs[whole[p, c], c], probs[chunked[p, c], c], atol=1e-6)
        assert (np.isin(whole[p], chunked[p]).mean()) > 0.95


def test_a_saved_catalogue_is_mapped_and_answers_the_same(world, tmp_path):
    model, ids, audio, users = world
    terms = _user_terms(model, users)
    rec = Recommender.build(model, ids, audio, terms, TWO_STAGE)
    rec.save(tmp_path)
    back = Recommender.load(tmp_path)
    assert isinstance(back.terms, np.memmap) and not back.terms.flags.writeable and back.kind == rec.kind
    for u in terms[:5]:
        assert back.recommend(u, 4, 10)[0] == rec.recommend(u, 4, 10)[0]
    (tmp_path / "terms.npy").write_bytes((tmp_path / "terms.npy").read_bytes()[:-12 * 4 * 10])  # a cut file
    with pytest.raises(ValueError):
        Recommender.load(tmp_path)


def test_an_empty_catalogue_recommends_nothing(world):
    model, _, audio, users = world
    rec = Recommender.build(model, [], audio[:0], _user_terms(model, users))
    assert len(rec) == 0 and rec.recommend(_user_term(model, users[0]), 0, 5)[0] == []


def test_log_odds_rank_what_saturated_probabilities_tie():
    """Tracks are ranked by log-odds: equal to log(p / (1 - p)) where p is representable, and still
    apart where a confident tagger's float32 probabilities are all 1.0."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 6))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(log_odds(z), np.log(p / (1 - p)), rtol=1e-9)
    for c in range(6):                                                     # a request's one column
        np.testing.assert_allclose(log_odds(z, c), log_odds(z)[:, c], rtol=1e-12)
    saturated = np.array([[30.0, 0.0, 1.0], [30.0, 0.5, 1.0], [31.0, 0.0, 1.0]], np.float32)
    e = np.exp(saturated - saturated.max(axis=1, keepdims=True))
    assert np.all(e[:, 0] / e.sum(axis=1) == 1.0)                          # softmax ties at 1.0
    assert list(np.argsort(-log_odds(saturated)[:, 0])) == [2, 0, 1]       # log-odds do not
