import torch

from ctxtag.embeddings.model import (
    N_DEMOGRAPHICS,
    AudioCNN,
    SiameseRecommender,
    UserBranch,
    similarity,
)


def test_user_branch_gives_a_40_d_embedding_and_ignores_padding():
    torch.manual_seed(0)
    model = UserBranch(n_tracks=30, n_albums=10, n_artists=5).eval()
    demo = torch.zeros(2, N_DEMOGRAPHICS)
    hist = torch.tensor([[3, 4, 0, 0], [3, 4, 0, 0]])
    padded = torch.tensor([[3, 4, 0, 0], [0, 3, 0, 4]])                    # same ids, padding moved
    ue = model(hist, hist % 10, hist % 5, demo)
    assert ue.shape == (2, 40)
    torch.testing.assert_close(model(padded, padded % 10, padded % 5, demo), ue)
    logits = model.logits(ue, torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert logits.shape == (2, 3)


def test_audio_cnn_embeds_any_context_duration_to_40_d_without_a_final_relu():
    cnn = AudioCNN(n_mels=128).eval()
    for frames in (129, 431):
        ae = cnn(torch.randn(3, 128, frames))
        assert ae.shape == (3, 40)
    assert (ae < 0).any()                                  # the feature layer has no ReLU
    assert sum(isinstance(m, torch.nn.Conv2d) for m in cnn.modules()) == 5
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in cnn.modules()) == 5


def test_siamese_scores_every_slot_with_one_shared_cnn():
    torch.manual_seed(0)
    cnn = AudioCNN(n_mels=16)
    anchors = torch.randn(4, 40)
    model = SiameseRecommender(cnn, anchors).eval()
    mels = torch.randn(3, 16, 40)
    slots = torch.tensor([[0, 1, 2], [2, 2, 0]])
    sim = model(torch.tensor([1, 3]), mels, slots)
    ae = cnn(mels)
    expect = torch.stack([similarity(anchors[1], ae[[0, 1, 2]]), similarity(anchors[3], ae[[2, 2, 0]])])
    torch.testing.assert_close(sim, expect)
    assert sim.abs().max() <= 1.0


def test_dcue_anchor_is_a_learnt_lookup_per_user():
    model = SiameseRecommender(AudioCNN(n_mels=16), None, n_users=5)
    assert isinstance(model.user_lookup, torch.nn.Embedding)
    assert model.users(torch.tensor([0, 4])).requires_grad
