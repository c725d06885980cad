import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ctxtag.tagger.metrics import per_context, report


def test_threshold_metrics_by_hand():
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    p = np.array([[0.9, 0.6], [0.4, 0.7], [0.2, 0.1], [0.8, 0.3]])
    m = per_context(y, p, threshold=0.5)
    # context 0: predictions 1,0,0,1 vs 1,1,0,0 -> TP 1, FP 1, FN 1, TN 1
    assert m["hamming_loss"][0] == 0.5
    assert (m["recall"][0], m["precision"][0], m["f1"][0], m["tn_rate"][0]) == (0.5, 0.5, 0.5, 0.5)
    # context 1: predictions 1,1,0,0 vs 0,1,0,1 -> TP 1, FP 1, FN 1, TN 1
    assert m["tn_rate"][1] == 0.5
    assert m["roc_auc"][0] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert m["pr_auc"][1] == pytest.approx(average_precision_score(y[:, 1], p[:, 1]))


def test_single_class_context_is_undefined_not_zero():
    y = np.array([[1, 0], [1, 1], [1, 0]])
    p = np.array([[0.9, 0.2], [0.8, 0.9], [0.7, 0.1]])
    r = report(y, p, ["a", "b"])
    assert r["per_context"]["a"]["roc_auc"] is None and r["per_context"]["a"]["tn_rate"] is None
    assert r["macro"]["roc_auc"] == 1.0                      # the mean over defined contexts only


def test_a_context_never_predicted_counts_as_zero_precision_and_f1():
    y = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.2], [0.8, 0.3], [0.1, 0.4]])    # context b never predicted
    r = report(y, p, ["a", "b"])
    assert r["per_context"]["b"]["precision"] == 0.0 and r["per_context"]["b"]["f1"] == 0.0
    assert r["macro"]["f1"] == pytest.approx((1.0 + 0.0) / 2)
    from sklearn.metrics import f1_score

    assert r["macro"]["f1"] == pytest.approx(f1_score(y, p >= 0.5, average="macro", zero_division=0))


def test_weighted_metrics_are_sklearns_and_resamples_are_weightings():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ctxtag.tagger.metrics import per_context, weighted

    rng = np.random.default_rng(11)
    y = (rng.random((150, 5)) < 0.3).astype(int)
    prob = np.round(rng.random((150, 5)), 1)                  # many ties
    pc = per_context(y, prob)
    for c in range(5):
        assert pc["roc_auc"][c] == pytest.approx(roc_auc_score(y[:, c], prob[:, c]), abs=1e-12)
        assert pc["pr_auc"][c] == pytest.approx(average_precision_score(y[:, c], prob[:, c]), abs=1e-12)
    # multiplicities are the resampled rows: the same numbers as the metrics of the repeated rows
    counts = rng.multinomial(150, np.full(150, 1 / 150))
    rows = np.repeat(np.arange(150), counts)
    got = weighted(y, prob, counts[None, :])
    want = per_context(y[rows], prob[rows])
    for k, v in want.items():
        np.testing.assert_allclose(got[k][0], v, atol=1e-12, err_msg=k)


def test_bootstrap_intervals_cover_the_estimate_and_pair_models():
    from ctxtag.tagger.metrics import bootstrap, report

    rng = np.random.default_rng(12)
    y = (rng.random((300, 4)) < 0.4).astype(int)
    good = np.clip(y * 0.5 + rng.random((300, 4)) * 0.6, 0, 1)     # informative scores
    noise = rng.random((300, 4))
    boot = bootstrap(y, {"noise": noise, "good": good, "same": noise.copy()}, reps=400, seed=0, baseline="noise")
    for name, prob in (("noise", noise), ("good", good)):
        ci = boot["intervals"][name]["roc_auc"]
        assert ci["low"] < report(y, prob, "abcd")["macro"]["roc_auc"] < ci["high"]
    assert boot["intervals"]["noise"]["roc_auc"]["low"] < 0.5 < boot["intervals"]["noise"]["roc_auc"]["high"]
    better = boot["paired"]["good"]["roc_auc"]
    assert better["interval"]["low"] > 0.2 and better["p"] < 0.01
    same = boot["paired"]["same"]["roc_auc"]
    assert same["mean"] == 0 and same["p"] == 1.0                     # identical models never differ
    assert bootstrap(y, {"a": good}, reps=400, seed=0) == bootstrap(y, {"a": good}, reps=400, seed=0, chunk=37)


def test_resampling_whole_groups_gives_the_row_weighted_auc():
    from ctxtag.common.bootstrap import multiplicities
    from ctxtag.tagger.metrics import cluster_roc_auc, weighted

    rng = np.random.default_rng(13)
    group = rng.integers(0, 12, 500)
    y = (rng.random((500, 4)) < 0.3).astype(int)
    y[group == 3, 2] = 0                                        # a group without positives of a context
    prob = np.round(rng.random((500, 4)), 2)                   # ties, within and across groups
    counts = multiplicities(12, 40, rng)
    got = cluster_roc_auc(y, prob, group, counts)
    want = weighted(y, prob, counts[:, group])["roc_auc"]
    np.testing.assert_allclose(got, want, atol=1e-12)
