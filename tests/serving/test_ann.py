import numpy as np

from ctxtag.serving.ann import ExactIndex, HNSWIndex, build


def test_exact_index_is_brute_force_cosine():
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(500, 40)), rng.normal(size=(7, 40))
    scores, idx = ExactIndex(x).search(q, 10)
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.sort(sims, axis=1)[:, ::-1][:, :10], rtol=1e-5)
    assert ExactIndex(x[:3]).search(q, 10)[1].shape == (7, 3)           # k capped by the catalogue


def test_hnsw_recall_against_exact_search():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 40))
    x = centres[rng.integers(0, 50, 20_000)] + 0.5 * rng.normal(size=(20_000, 40))
    q = centres[rng.integers(0, 50, 100)] + 0.5 * rng.normal(size=(100, 40))      # queries like the data
    _, exact = ExactIndex(x).search(q, 10)

    def recall(ef: int) -> float:
        _, approx = HNSWIndex(x, m=32, ef_search=ef).search(q, 10)
        return np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])

    low, high = recall(10), recall(256)
    assert high >= 0.95 and high >= low


def test_build_switches_to_hnsw_for_large_catalogues():
    x = np.random.default_rng(2).normal(size=(300, 8))
    assert build(x, min_ann=1000).kind == "exact"
    assert build(x, min_ann=100).kind == "hnsw"
