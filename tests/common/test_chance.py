import numpy as np

from ctxtag.common.chance import chance_scores
from ctxtag.context.evaluation import baselines
from ctxtag.tagger.metrics import report


def test_chance_scores_are_seeded_noise_and_the_prevalence_on_every_row():
    prevalence = np.array([0.1, 0.5, 0.02])
    a, b = chance_scores(prevalence, 200, seed=3), chance_scores(prevalence, 200, seed=3)
    assert a["random"].shape == (200, 3) and np.array_equal(a["random"], b["random"])
    assert not np.array_equal(a["random"], chance_scores(prevalence, 200, seed=4)["random"])
    assert (a["popularity"] == prevalence).all()


def test_the_chance_taggers_sit_at_the_floor_of_a_ranking_metric():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 4)) < [0.1, 0.3, 0.05, 0.2]).astype(np.uint8)
    s = chance_scores(y.mean(axis=0), len(y), seed=7)          # not the seed that drew y
    popular = report(y, s["popularity"], ["a", "b", "c", "d"])["macro"]
    assert popular["roc_auc"] == 0.5 and popular["recall"] == 0.0           # one score for every track
    assert abs(report(y, s["random"], ["a", "b", "c", "d"])["macro"]["roc_auc"] - 0.5) < 0.08


def test_the_user_models_chance_rows_are_the_same_rule():
    y_train = np.array([0, 2, 2, 1, 2])
    got = baselines(y_train, 7, 3, seed=5)
    want = chance_scores(np.array([0.2, 0.2, 0.6]), 7, seed=5)
    assert np.array_equal(got["random"], want["random"]) and np.allclose(got["popularity"], want["popularity"])
