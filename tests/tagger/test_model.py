import torch
from torch import nn

from ctxtag.config import AudioConfig
from ctxtag.tagger.model import AudioTagger, ChoiCNN


def test_architecture_matches_the_paper():
    m = ChoiCNN()
    convs = [layer for layer in m.features if isinstance(layer, nn.Conv2d)]
    pools = [layer for layer in m.features if isinstance(layer, nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert all(p.kernel_size == 2 for p in pools) and len(pools) == 4
    assert isinstance(m.input_bn, nn.BatchNorm2d)
    assert (m.fc.out_features, m.head.out_features, m.dropout.p) == (256, 15, 0.3)
    assert m.flat_dim == 256 * (96 // 16) * (646 // 16)      # 256 x 6 x 40


def test_parameter_count_from_layer_shapes():
    conv = sum(9 * i * o + o for i, o in [(1, 32), (32, 64), (64, 128), (128, 256)])
    expected = 2 + conv + (61_440 * 256 + 256) + (256 * 15 + 15)
    assert ChoiCNN().num_parameters() == expected == 16_120_593
    assert "16,120,593" in ChoiCNN().summary()


def test_forward_gives_logits_and_probabilities():
    m = ChoiCNN().eval()
    x = torch.randn(3, 96, 646)
    logits = m(x)
    assert logits.shape == (3, 15)
    p = m.predict_proba(x)
    torch.testing.assert_close(p, torch.sigmoid(logits))


def test_waveform_tagger_runs_end_to_end():
    cfg = AudioConfig(duration_s=3.0)
    tagger = AudioTagger(cfg, n_classes=15).eval()
    assert tagger(torch.randn(2, cfg.n_samples) * 0.1).shape == (2, 15)


def test_embedding_is_the_hidden_layer_the_head_reads():
    m = ChoiCNN().eval()
    x = torch.randn(2, 96, 646)
    emb = m.embed(x)
    assert emb.shape == (2, 256) and (emb >= 0).all()
    torch.testing.assert_close(m.head(emb), m(x))
