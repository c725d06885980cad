import numpy as np
import pandas as pd
import pytest

from ctxtag.context import metrics as um

CONTEXTS = ("a", "b", "c", "d")


def test_stream_accuracy_at_k_and_its_reciprocal_rank_weighting():
    prob = np.array([[.7, .1, .1, .1],      # truth a at rank 1
                     [.1, .6, .2, .1],      # truth c at rank 2
                     [.4, .3, .2, .1],      # truth c at rank 3
                     [.4, .3, .2, .1]])     # truth d at rank 4
    y = np.array([0, 2, 2, 3])
    assert um.rank_of_truth(prob, y).tolist() == [1, 2, 3, 4]
    got = um.stream_accuracy(prob, y, k=3)
    assert got["accuracy"] == 0.25 and got["accuracy@3"] == 0.75
    assert got["weighted_accuracy@3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)


def test_ties_count_against_the_truth():
    assert um.rank_of_truth(np.full((1, 4), 0.25), np.array([0]))[0] == 4


def _brute_satisfaction(users, tracks, y, prob, single, threshold):
    scores = []
    for u in sorted(set(users)):
        mine = users == u
        ts = sorted(set(tracks[mine]))
        present = sorted(set(y[mine]))
        g = np.zeros((len(ts), len(present)), bool)
        p = np.zeros_like(g)
        for i in np.nonzero(mine)[0]:
            r = ts.index(tracks[i])
            g[r, present.index(y[i])] = True
            if single:
                p[r, int(np.argmax(prob[i, present]))] = True
            else:
                p[r] |= prob[i, present] >= threshold
        tp, fp, fn = (g & p).sum(), (~g & p).sum(), (g & ~p).sum()
        rec = tp / (tp + fn) if tp + fn else 0.0
        pre = tp / (tp + fp) if tp + fp else 0.0
        scores.append(((g == p).all(1).mean(), rec, pre, 2 * pre * rec / (pre + rec) if pre + rec else 0.0))
    return np.mean(scores, axis=0)


@pytest.mark.parametrize("single", [True, False])
def test_user_satisfaction_matches_a_per_user_loop(single):
    rng = np.random.default_rng(0)
    n = 300
    users = rng.choice(["u1", "u2", "u3", "u4"], n)
    tracks = rng.choice([f"t{i}" for i in range(12)], n)
    y = rng.integers(0, len(CONTEXTS), n)
    prob = rng.random((n, len(CONTEXTS)))
    got = um.user_satisfaction(users, tracks, y, prob, single=single, threshold=0.6)
    want = _brute_satisfaction(users, tracks, y, prob, single, 0.6)
    np.testing.assert_allclose([got["accuracy"], got["recall"], got["precision"], got["f1"]], want)
    assert got["users"] == 4


def test_a_perfect_single_label_model_satisfies_every_user():
    y = np.array([0, 1, 2, 1])
    got = um.user_satisfaction(np.array(["u", "u", "v", "v"]), np.array(["t1", "t2", "t1", "t3"]), y,
                               np.eye(4)[y], single=True)
    assert got["accuracy"] == got["recall"] == got["precision"] == got["f1"] == 1.0


def test_over_the_users_own_contexts_chance_satisfies_single_context_users():
    """The poster's protocol restricts P_u to the user's contexts: random scores satisfy a user of
    one context completely; ranked over all contexts they do not."""
    rng = np.random.default_rng(5)
    n = 400
    users = rng.choice([f"u{i}" for i in range(40)], n)
    tracks = rng.choice([f"t{i}" for i in range(30)], n)
    y = np.zeros(n, dtype=np.int64)                       # every user streams in one context
    prob = rng.random((n, len(CONTEXTS)))
    own = um.user_satisfaction(users, tracks, y, prob, single=True)
    every = um.user_satisfaction(users, tracks, y, prob, single=True, columns="all")
    assert own["single_context_users"] == every["single_context_users"] == 1.0
    assert own["accuracy"] == own["f1"] == 1.0
    assert every["f1"] < 0.6                              # chance over 4 contexts, several streams a track
    # all contexts by brute force: the argmax over every column, the user's G_u padded with zeros
    got = um.user_satisfaction(users, tracks, rng.integers(0, 4, n), prob, single=True, columns="all")
    assert 0 <= got["f1"] <= 1 and got["single_context_users"] < 1.0
    with pytest.raises(ValueError, match="columns"):
        um.user_satisfaction(users, tracks, y, prob, single=True, columns="some")


def test_chance_models_score_what_chance_scores():
    from ctxtag.context.evaluation import baselines

    rng = np.random.default_rng(6)
    y_train = rng.choice(4, 5000, p=[0.55, 0.25, 0.15, 0.05])
    y_test = rng.choice(4, 20000, p=[0.55, 0.25, 0.15, 0.05])
    got = baselines(y_train, len(y_test), 4, seed=0)
    random, popular = (um.stream_accuracy(got[k], y_test, k=2) for k in ("random", "popularity"))
    assert random["accuracy"] == pytest.approx(0.25, abs=0.01) and random["accuracy@2"] == pytest.approx(0.5, abs=0.01)
    assert popular["accuracy"] == pytest.approx(0.55, abs=0.01)          # always the commonest context
    assert popular["accuracy@2"] == pytest.approx(0.80, abs=0.01)


def test_mo_mg_scores_tracks_against_the_union_of_their_test_contexts():
    tracks = np.array(["t1", "t1", "t2"])
    y = np.array([0, 1, 2])
    prob = np.array([[.9, .8, .1, .1], [.9, .8, .1, .1], [.1, .1, .2, .9]])
    got = um.mo_mg(tracks, y, prob, CONTEXTS, threshold=0.5)
    # t1 truth {a, b} predicted {a, b}; t2 truth {c} predicted {d}
    assert got["per_context"]["a"]["recall"] == 1.0 and got["per_context"]["b"]["recall"] == 1.0
    assert got["per_context"]["c"]["recall"] == 0.0 and got["per_context"]["d"]["precision"] == 0.0


def test_multi_label_output_has_more_recall_and_less_precision_than_single_label():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    prob = np.clip(np.eye(4)[y] * 0.4 + rng.random((400, 4)) * 0.7, 0, 1)
    mo, so = um.mo_sg(y, prob, CONTEXTS, 0.5), um.so_sg(y, prob, CONTEXTS)
    assert mo["macro"]["recall"] > so["macro"]["recall"]
    assert mo["macro"]["precision"] < so["macro"]["precision"]
    assert mo["macro"]["roc_auc"] == so["macro"]["roc_auc"]
    pd.testing.assert_series_equal(pd.Series(mo["per_context"]["a"]).drop(["recall", "precision", "f1"]),
                                   pd.Series(so["per_context"]["a"]).drop(["recall", "precision", "f1"]))
