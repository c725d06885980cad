"""A whole track's contexts (mean over windows) beside the paper's one crop, from a checkpoint."""

import numpy as np
import pytest
import soundfile as sf
import torch

from ctxtag.audio.decode import decode, load_clip, windows
from ctxtag.config import AudioConfig, TaggingConfig
from ctxtag.tagger.inference import (
    clip_probabilities,
    load_tagger,
    model_meta,
    predict_files,
    track_probabilities,
)
from ctxtag.tagger.model import ChoiCNN
from tests.conftest import SHARED

CONTEXTS = ("car", "party", "sleep")
AUDIO = AudioConfig(duration_s=3.0, offset_s=30.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cnn = ChoiCNN(AUDIO.n_mels, AUDIO.n_frames, len(CONTEXTS), dropout=0.3)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": cnn.state_dict(), "meta": model_meta(CONTEXTS, AUDIO, 0.3, "none")}, path)
    return path


def _real_clip():
    clips = sorted((SHARED / "audio").glob("*.ogg"))
    if not clips:
        pytest.skip("real clips not present under ../shared/data/audio")
    return clips[0]


def test_a_track_is_the_mean_of_its_windows(checkpoint):
    tagger, _ = load_tagger(checkpoint)
    y = decode(_real_clip(), AUDIO.sample_rate, max_s=20.0)
    wins = windows(y, AUDIO, max_windows=16)
    assert len(wins) == 6
    each = np.stack([clip_probabilities(tagger, w) for w in wins])
    np.testing.assert_allclose(track_probabilities(tagger, wins, batch_size=4), each.mean(0), rtol=1e-5, atol=1e-6)
    assert np.abs(each - each.mean(0)).max() > 1e-4                # the windows do differ on real music


def test_predict_files_scores_the_crop_or_the_whole_track(checkpoint, tmp_path):
    clip = _real_clip()
    tagging = TaggingConfig(max_windows=4, max_track_s=60.0)
    (crop_pred,), _ = predict_files(checkpoint, [clip], top=3)
    (track_pred,), _ = predict_files(checkpoint, [clip], top=3, track=tagging)
    assert "windows" not in crop_pred and track_pred["windows"] == 4           # 20 windows in 60 s, 4 spread
    tagger, _ = load_tagger(checkpoint)
    wins = windows(decode(clip, AUDIO.sample_rate, max_s=60.0), AUDIO, 4)
    expected = track_probabilities(tagger, wins)
    for c in track_pred["contexts"]:
        assert abs(c["probability"] - expected[CONTEXTS.index(c["context"])]) < 1e-4
    once = clip_probabilities(tagger, load_clip(clip, AUDIO))
    for c in crop_pred["contexts"]:
        assert abs(c["probability"] - once[CONTEXTS.index(c["context"])]) < 1e-4
    # a file shorter than one window: its one padded window is the crop, so both answers agree
    short = tmp_path / "short.wav"
    sf.write(short, decode(clip, AUDIO.sample_rate, max_s=2.0), AUDIO.sample_rate)
    (a,), _ = predict_files(checkpoint, [short], top=3)
    (b,), _ = predict_files(checkpoint, [short], top=3, track=tagging)
    assert b["windows"] == 1 and a["contexts"] == b["contexts"]
