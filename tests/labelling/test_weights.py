import math
import time

import numpy as np
import pandas as pd
import pytest

from ctxtag.labelling.weights import (
    compute_weights,
    negative_exact,
    negative_ignore_zeros,
    negative_pairwise,
    positive_tfidf,
    superset_counts,
)
from tests.conftest import shared_file

# contexts a, b, c; worked by hand below
Y = np.array([
    [1, 1, 0],   # t1
    [1, 1, 1],   # t2
    [1, 0, 0],   # t3
    [0, 1, 1],   # t4
    [1, 1, 0],   # t5
])
COUNTS = np.array([
    [3, 4, 0],
    [5, 3, 6],
    [8, 0, 1],
    [0, 3, 3],
    [4, 5, 2],
])


def test_exact_match_by_hand():
    w = negative_exact(Y)
    # t1, c: tracks with a=1, b=1 are t1 t2 t5; c=0 in t1 t5
    assert w[0, 2] == pytest.approx(2 / 3)
    # t1, a (a positive): tracks with b=1, c=0 are t1 t5, both a=1
    assert w[0, 0] == pytest.approx(0.0)
    # t3, b: tracks with a=1, c=0 are t1 t3 t5; b=0 only in t3
    assert w[2, 1] == pytest.approx(1 / 3)
    # t3, c: only t3 has a=1, b=0
    assert w[2, 2] == pytest.approx(1.0)
    # t4, a: tracks with b=1, c=1 are t2 (a=1) and t4 (a=0)
    assert w[3, 0] == pytest.approx(1 / 2)


def test_ignore_zeros_by_hand():
    w = negative_ignore_zeros(Y)
    assert w[0, 2] == pytest.approx(2 / 3)   # t1, c: given a=1, b=1
    assert w[2, 1] == pytest.approx(1 / 4)   # t3, b: given a=1 only -> t1 t2 t3 t5
    assert w[2, 2] == pytest.approx(3 / 4)   # t3, c: given a=1 -> c=0 in t1 t3 t5
    assert w[3, 0] == pytest.approx(1 / 2)   # t4, a: given b=1, c=1 -> t2 t4
    assert w[2, 0] == pytest.approx(1 / 5)   # t3, a: nothing else positive -> marginal P(a=0)


def test_pairwise_by_hand():
    w = negative_pairwise(Y)
    # t3, c: mean of P(c=0 | a=1) = 3/4 and P(c=0 | b=0) = 1/1
    assert w[2, 2] == pytest.approx((3 / 4 + 1) / 2)
    # t4, a: mean of P(a=0 | b=1) = 1/4 and P(a=0 | c=1) = 1/2
    assert w[3, 0] == pytest.approx((1 / 4 + 1 / 2) / 2)


def test_positive_tfidf_by_hand():
    n_c = COUNTS.sum(0)                      # 20, 15, 12
    n_bar = Y.sum(1)
    raw = np.zeros((5, 3))
    for i in range(5):
        for c in range(3):
            if Y[i, c]:
                raw[i, c] = COUNTS[i, c] / n_c[c] * math.log(3 / n_bar[i])
    expected = raw / raw[Y == 1].mean()
    w = positive_tfidf(Y, COUNTS)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w[Y == 1].mean() == pytest.approx(1.0)
    assert np.all(w[Y == 0] == 0)
    assert np.all(w[1] == 0)                 # a track with every label: idf = log(3/3) = 0
    assert w[2, 0] == w.max()                # rare track, many appearances -> highest


def _brute(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, m = y.shape
    ex, iz, pw = (np.zeros((n, m)) for _ in range(3))
    for i in range(n):
        for c in range(m):
            others = [k for k in range(m) if k != c]
            same = (y[:, others] == y[i, others]).all(1)
            ex[i, c] = (y[same, c] == 0).mean()
            pos = [k for k in others if y[i, k]]
            sup = (y[:, pos] == 1).all(1)
            iz[i, c] = (y[sup, c] == 0).mean()
            pw[i, c] = np.mean([(y[y[:, k] == y[i, k], c] == 0).mean() for k in others])
    return ex, iz, pw


def test_vectorised_equals_brute_force_on_random_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((120, 6)) < 0.4).astype(np.uint8)
    ex, iz, pw = _brute(y)
    np.testing.assert_allclose(negative_exact(y), ex, rtol=1e-6)
    np.testing.assert_allclose(negative_ignore_zeros(y), iz, rtol=1e-6)
    np.testing.assert_allclose(negative_pairwise(y), pw, rtol=1e-6)


def test_sparse_path_equals_dense_path(monkeypatch):
    rng = np.random.default_rng(1)
    y = (rng.random((200, 7)) < 0.5).astype(np.uint8)
    dense = negative_exact(y), negative_ignore_zeros(y)
    monkeypatch.setattr("ctxtag.labelling.weights.DENSE_MAX_LABELS", 3)
    np.testing.assert_allclose(negative_exact(y), dense[0])
    np.testing.assert_allclose(negative_ignore_zeros(y), dense[1])


def test_superset_counts_small_lattice():
    count = np.array([1, 2, 3, 4])        # sets {}, {0}, {1}, {0,1}
    assert superset_counts(count, 2).tolist() == [10, 6, 7, 4]


@pytest.mark.realdata
def test_real_matrix_weights_are_probabilities_and_fast():
    hot = pd.read_csv(shared_file("deezer_context", "balanced_ground_truth_hot_vector.csv"))
    cnt = pd.read_csv(shared_file("deezer_context", "balanced_ground_truth_track_count.csv"))
    y = hot.iloc[:, 1:].to_numpy()
    counts = cnt.set_index("song_id").loc[hot["song_id"]].to_numpy()
    start = time.perf_counter()
    w = compute_weights(y, counts)
    elapsed = time.perf_counter() - start
    for name in ("neg_exact", "neg_ignore_zeros", "neg_pairwise"):
        arr = w.as_dict()[name]
        assert arr.shape == y.shape and np.all((arr >= 0) & (arr <= 1)), name
    # "ignore zeros" conditions on fewer labels, so it believes more negatives are missing
    assert w.neg_ignore_zeros[y == 0].mean() < w.neg_exact[y == 0].mean()
    assert w.pos_tfidf[y == 1].mean() == pytest.approx(1.0, rel=1e-5)
    assert elapsed < 30, "vectorised weights should take seconds (benchmarks/ measures it)"


FIT = np.array([True, True, True, False, False])        # t1 t2 t3 "train"; t4 t5 held out


def test_fitted_on_the_training_rows_only_by_hand():
    w = negative_exact(Y, FIT)
    assert w[4, 2] == pytest.approx(1 / 2)   # t5, c given a=1, b=1: t1 (c=0), t2 (c=1); t5 itself not counted
    assert w[3, 0] == pytest.approx(0.0)     # t4, a given b=1, c=1: only t2, a=1 (all rows: 1/2)
    assert w[3, 1] == pytest.approx(1 / 3)   # t4, b given a=0, c=1: no fitted row -> P(b=0) among them
    z = negative_ignore_zeros(Y, FIT)
    assert z[3, 0] == pytest.approx(0.0)     # t4, a given b=1, c=1: t2 only
    assert z[2, 1] == pytest.approx(1 / 3)   # t3, b given a=1: t1 t2 t3, b=0 in t3
    p = negative_pairwise(Y, FIT)
    # t3, c: mean of P(c=0 | a=1) = 2/3 and P(c=0 | b=0) = 1/1 among t1 t2 t3
    assert p[2, 2] == pytest.approx((2 / 3 + 1) / 2)


def test_fitting_on_every_row_is_the_transductive_estimate():
    for fn in (negative_exact, negative_ignore_zeros, negative_pairwise):
        np.testing.assert_array_equal(fn(Y, np.ones(5, bool)), fn(Y))
    np.testing.assert_array_equal(positive_tfidf(Y, COUNTS, np.ones(5, bool)), positive_tfidf(Y, COUNTS))


def test_fitted_rows_get_what_their_submatrix_alone_gives():
    rng = np.random.default_rng(3)
    y = (rng.random((400, 8)) < 0.3).astype(np.int64)
    counts = y * rng.integers(1, 9, y.shape)
    fit = rng.random(400) < 0.65
    for fn in (negative_exact, negative_ignore_zeros, negative_pairwise):
        np.testing.assert_allclose(fn(y, fit)[fit], fn(y[fit]), rtol=1e-6)
    np.testing.assert_allclose(positive_tfidf(y, counts, fit)[fit], positive_tfidf(y[fit], counts[fit]), rtol=1e-6)
    # held-out rows only read the statistics: changing their labels changes no fitted row's weight
    other = y.copy()
    other[~fit] = 1 - other[~fit]
    np.testing.assert_array_equal(negative_ignore_zeros(other, fit)[fit], negative_ignore_zeros(y, fit)[fit])


def test_unit_mean_unit_variance_is_an_option():
    rng = np.random.default_rng(4)
    y = (rng.random((300, 6)) < 0.4).astype(np.int64)
    counts = y * rng.integers(1, 20, y.shape)
    fit = rng.random(300) < 0.7
    w = positive_tfidf(y, counts, fit, scaling="mean_std")
    fitted = w[(y == 1) & fit[:, None]]
    assert fitted.mean() == pytest.approx(1.0, abs=1e-5) and fitted.std() == pytest.approx(1.0, abs=1e-5)
    assert (w[y == 0] == 0).all() and (fitted < 0).any()      # below-average positives turn negative
    default = positive_tfidf(y, counts, fit)
    assert default[(y == 1) & fit[:, None]].mean() == pytest.approx(1.0, abs=1e-5) and (default >= 0).all()
    with pytest.raises(ValueError, match="scaling"):
        positive_tfidf(y, counts, scaling="zscore")
