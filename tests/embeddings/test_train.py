"""The two branches learn what they should on small worlds whose answer is known."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from ctxtag.config import EmbeddingConfig
from ctxtag.embeddings.data import Histories, Ragged, Vocab, epoch_seconds
from ctxtag.embeddings.train import (
    Examples,
    Pairs,
    fit_audio,
    fit_user_branch,
    scores,
    track_embeddings,
    user_embeddings,
    variant,
)

CPU = torch.device("cpu")
CFG = EmbeddingConfig(cnn_channels=(4, 8, 8, 8, 8), epochs=10, patience=10, batch_size=16, eval_segments=2,
                      user_epochs=40, user_patience=40)


def test_model_names_give_loss_negatives_and_anchor():
    assert variant("metric_1vs4") == ("metric", 4, True)
    assert variant("multi_1vs1") == ("multi", 1, True)
    assert variant("dcue_1vs1") == ("metric", 1, False)
    assert variant("basic_binary") == ("binary", 0, True)


def _audio_world(seed=0):
    """Tracks of two kinds (energy in the high or the low mel bands); half the users like the
    first kind and dislike the second, the other half the opposite; their UEs point apart."""
    rng = np.random.default_rng(seed)
    n_tracks, n_users = 40, 16
    kind = np.arange(n_tracks) % 2
    mels = rng.normal(0, 0.3, (n_tracks, 16, 96)).astype(np.float32)
    mels[kind == 0, 10:] += 1.5
    mels[kind == 1, :6] += 1.5
    group = np.arange(n_users) % 2
    v = rng.normal(size=40)
    anchors = np.where(group[:, None] == 0, v, -v).astype(np.float32) + 0.1 * rng.normal(size=(n_users, 40)).astype(np.float32)
    u, t = np.meshgrid(np.arange(n_users), np.arange(n_tracks), indexing="ij")
    u, t = u.ravel(), t.ravel()
    liked = (kind[t] == group[u]).astype(np.int8)
    split = rng.random(len(u))
    pairs = Pairs(u, t, liked)
    return mels, anchors, pairs.subset(split < 0.6), pairs.subset(split >= 0.6)


@pytest.mark.parametrize("model", ["metric_1vs1", "metric_1vs4", "basic_binary", "dcue_1vs1"])
def test_audio_branch_learns_which_tracks_each_user_likes(model):
    mels, anchors, train, val = _audio_world()
    trained, history = fit_audio(model, 32, mels, train, val, len(anchors), anchors, CFG, 0, CPU)
    ae = track_embeddings(trained.cnn, mels, np.arange(len(mels)), 32, CPU, n_segments=2)
    assert np.allclose(np.linalg.norm(ae, axis=1), 1, atol=1e-5)
    anchor = trained.users(torch.arange(len(anchors))).detach().numpy()
    s = scores(anchor, ae, val, np.arange(len(mels)))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(val.liked, s) > 0.9, history
    assert max(h["val_auc"] for h in history) > 0.9


def test_user_branch_learns_taste_from_history():
    """Users who play even-numbered tracks like even-numbered tracks; their UEs must separate
    from the odd users' and score held-out tracks of their side higher."""
    rng = np.random.default_rng(0)
    n_users, n_tracks = 40, 60
    catalogue = pd.DataFrame({"track_id": [f"t{i}" for i in range(n_tracks)],
                              "album_id": [f"al{i // 3}" for i in range(n_tracks)],
                              "artist_id": [f"ar{i // 6}" for i in range(n_tracks)]})
    side = np.arange(n_users) % 2
    rows = []
    for u in range(n_users):
        mine = rng.choice(np.arange(side[u], n_tracks, 2), 20, replace=False)
        for j, t in enumerate(mine):
            rows.append((f"u{u}", f"t{t}", pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=j)))
    plays = pd.DataFrame(rows, columns=["user_id", "track_id", "event_timestamp"])
    users = pd.Index([f"u{u}" for u in range(n_users)])
    vocab = Vocab.build(catalogue["track_id"], catalogue)
    hist = Histories(plays, users, vocab, length=10)
    liked = plays.groupby("user_id").tail(8)                  # the later plays are the liked tracks
    uidx = users.get_indexer(liked["user_id"])
    tidx = vocab.track_index(liked["track_id"])
    until = epoch_seconds(liked["event_timestamp"])
    is_val = uidx % 5 == 0
    train = Examples.build(hist, uidx[~is_val], tidx[~is_val], until[~is_val])
    val = Examples.build(hist, uidx[is_val], tidx[is_val], until[is_val])
    demo = np.zeros((n_users, 6), dtype=np.float32)
    cfg = dataclasses.replace(CFG, user_hidden=(32,))
    model, history = fit_user_branch(train, val, Ragged(np.zeros(0, int), np.zeros(0, int), n_users),
                                     (len(vocab.tracks), len(vocab.albums), len(vocab.artists)), demo, cfg, 0, CPU)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    ue = user_embeddings(model, hist, demo, CPU)
    assert ue.shape == (n_users, 40)
    with torch.no_grad():
        even = torch.tensor(vocab.track_index([f"t{i}" for i in range(0, n_tracks, 2)]))
        odd = torch.tensor(vocab.track_index([f"t{i}" for i in range(1, n_tracks, 2)]))
        logits_even = model.logits(torch.from_numpy(ue), even.repeat(n_users, 1)).mean(1).numpy()
        logits_odd = model.logits(torch.from_numpy(ue), odd.repeat(n_users, 1)).mean(1).numpy()
    prefers_own = np.where(side == 0, logits_even > logits_odd, logits_odd > logits_even)
    assert prefers_own.mean() > 0.9
