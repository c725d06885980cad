"""The stream models on disk: save, then the one loader per kind gives the same model back."""

import numpy as np
import torch

from ctxtag.config import UserModelConfig
from ctxtag.context import artifacts, situational
from ctxtag.context.model import ContextTagger

CFG = UserModelConfig(gbt_max_iter=5)


def test_neural_and_gbt_models_round_trip(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = {"audio": rng.normal(size=(60, 4)).astype(np.float32), "user": rng.normal(size=(60, 3)).astype(np.float32),
         "situation": rng.normal(size=(60, 2)).astype(np.float32)}
    y = rng.integers(0, 3, 60)
    tagger = ContextTagger({"audio": 4, "user": 3}, 3, CFG.audio_hidden, CFG.user_hidden, CFG.fused_hidden,
                           CFG.dropout).eval()
    gbt = situational.fit(x, y, x, y, ("situation", "user"), CFG, 0)
    artifacts.save({"audio_user": (tagger, [{"epoch": 1}]), "situational": (gbt, [{"iterations": 5}])},
                   tmp_path, ("a", "b", "c"), CFG)
    assert artifacts.model_path(tmp_path, "situational").name == "situational.npz"
    loaded = artifacts.load_tagger(artifacts.model_path(tmp_path, "audio_user"))
    xt = {k: torch.from_numpy(v) for k, v in x.items() if k in ("audio", "user")}
    torch.testing.assert_close(loaded.predict_proba(xt), tagger.predict_proba(xt))
    again = artifacts.load_situational(artifacts.model_path(tmp_path, "situational"))
    np.testing.assert_allclose(situational.predict(again, x, 3), situational.predict(gbt, x, 3))
    assert (tmp_path / "audio_user.history.json").read_text() == '[{"epoch": 1}]'
