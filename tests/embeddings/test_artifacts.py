"""Chen et al.'s branches: what is written is what its one loader gives back, and loading runs
no code from the file (weights_only)."""

import pickle

import pandas as pd
import pytest
import torch

from ctxtag.config import EmbeddingConfig, chen_audio
from ctxtag.embeddings.artifacts import (
    audio_branch_path,
    frames,
    load_audio_branch,
    load_user_branch,
    save_audio_branch,
    save_user_branch,
)
from ctxtag.embeddings.data import Vocab
from ctxtag.embeddings.model import N_DEMOGRAPHICS, AudioCNN, UserBranch

CFG = EmbeddingConfig(cnn_channels=(4, 8, 8, 8, 8), user_hidden=(16,))
CATALOGUE = pd.DataFrame({"track_id": ["t1", "t2", "t3"], "album_id": ["a1", "a1", "a2"],
                          "artist_id": ["r1", "r1", "r2"]})


def test_audio_branch_round_trip(tmp_path):
    torch.manual_seed(0)
    cnn = AudioCNN(128, CFG.dim, CFG.cnn_channels).eval()
    path = save_audio_branch(cnn, "metric_1vs1", 3.0, [{"epoch": 1, "val_auc": 0.7}], CFG, chen_audio(), tmp_path)
    assert path == audio_branch_path(tmp_path, "metric_1vs1", 3.0)
    loaded, meta = load_audio_branch(path)
    mel = torch.randn(2, 128, frames(3.0, chen_audio()))
    torch.testing.assert_close(loaded(mel), cnn(mel))
    assert meta["model"] == "metric_1vs1" and meta["frames"] == 129 and meta["history"][0]["val_auc"] == 0.7


def test_user_branch_round_trip_rebuilds_the_vocabulary(tmp_path):
    torch.manual_seed(0)
    vocab = Vocab.build(["t1", "t3"], CATALOGUE)
    model = UserBranch(len(vocab.tracks), len(vocab.albums), len(vocab.artists), CFG.dim, CFG.user_hidden).eval()
    save_user_branch(model, vocab, [{"epoch": 1, "val_loss": 1.0}], CFG, tmp_path / "user_branch.pt")
    loaded, vocab2, meta = load_user_branch(tmp_path / "user_branch.pt", CATALOGUE)
    hist = torch.tensor([[1, 2, 0]])
    demo = torch.zeros(1, N_DEMOGRAPHICS)
    torch.testing.assert_close(loaded(hist, hist, hist, demo), model(hist, hist, hist, demo))
    assert list(vocab2.tracks) == ["t1", "t3"] and meta["history"][0]["val_loss"] == 1.0


class _Boom:
    def __reduce__(self):
        return (print, ("this ran from a checkpoint",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"cnn": {}, "config": {"dim": 40, "cnn_channels": [8]}, "audio": {"n_mels": 128}, "x": _Boom()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_audio_branch(path)
