import numpy as np

from ctxtag.embeddings.transfer import evaluate, table


def test_informative_features_transfer_and_noise_does_not():
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random((n, 3)) < 0.4).astype(int)
    signal = y @ rng.normal(size=(3, 20)) + 0.3 * rng.normal(size=(n, 20))
    noise = rng.normal(size=(n, 20))
    train = np.arange(n) < 200
    res = evaluate({"signal": signal, "noise": noise}, y, train, ~train, ["a", "b", "c"], pca_dim=128)
    assert res["signal"]["macro_roc_auc"] > 0.9
    assert abs(res["noise"]["macro_roc_auc"] - 0.5) < 0.15
    assert res["signal"]["pca"] == 20                                   # min(128, dims, train tracks)
    assert "| signal | 20 | 20 |" in table(res, {})
