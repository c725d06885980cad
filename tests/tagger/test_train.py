import dataclasses

import numpy as np
import pytest
import torch

from ctxtag.config import TrainConfig
from ctxtag.tagger.dataset import MelDataset
from ctxtag.tagger.model import ChoiCNN
from ctxtag.tagger.train import Checkpoints, fingerprint, predict, train

N_MELS, N_FRAMES = 16, 32
CFG = dataclasses.replace(TrainConfig(), batch_size=8, max_epochs=6, patience=10, log_mlflow=False, device="cpu")


def _data(n: int, seed: int) -> MelDataset:
    """Context 0 is loud, context 1 is bright: learnable from the 'mel' alone."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.5).astype(np.float32)
    mels = rng.normal(0, 0.3, (n, N_MELS, N_FRAMES)).astype(np.float16)
    mels += (y[:, 0, None, None] * 1.0).astype(np.float16)
    mels[:, N_MELS // 2:, :] += (y[:, 1, None, None] * 1.5).astype(np.float16)
    return MelDataset(mels, np.arange(n), y, None, None)


def _model() -> ChoiCNN:
    torch.manual_seed(0)
    return ChoiCNN(N_MELS, N_FRAMES, n_classes=3, channels=(4, 8, 8, 8), hidden=16)



def _ck(folder):
    return Checkpoints(folder / "best.pt", folder / "last.pt")

def test_learns_and_keeps_the_best_checkpoint(tmp_path):
    train_ds, val_ds = _data(96, 0), _data(32, 1)
    result = train(_model(), train_ds, val_ds, CFG, _ck(tmp_path), seed=0, fp="x")
    losses = [h["val_loss"] for h in result.history]
    assert result.epochs_run == 6 and losses[-1] < losses[0]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == result.best_epoch
    model = _model()
    model.load_state_dict(best["model"])
    _, val_loss = predict(model, val_ds, CFG, torch.device("cpu"))
    assert val_loss == pytest.approx(min(losses), rel=1e-4)


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    cfg = dataclasses.replace(CFG, max_epochs=50, patience=2, lr=0.0)   # lr 0: hardly any progress
    result = train(_model(), _data(32, 0), _data(16, 1), cfg, _ck(tmp_path), seed=0, fp="x")
    losses = [h["val_loss"] for h in result.history]
    assert result.stopped_early and result.epochs_run < 50
    assert result.epochs_run - result.best_epoch == 2                  # exactly `patience` bad epochs
    assert all(v >= result.best_val_loss for v in losses[result.best_epoch:])


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    train_ds, val_ds = _data(64, 0), _data(16, 1)
    straight = _model()
    train(straight, train_ds, val_ds, dataclasses.replace(CFG, max_epochs=4), _ck(tmp_path / "a"), seed=3, fp="f")

    class Interrupt(Exception):
        pass

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=4), _ck(tmp_path / "b"), seed=3, fp="f",
              on_epoch=stop_after_2)
    resumed = _model()
    result = train(resumed, train_ds, val_ds, dataclasses.replace(CFG, max_epochs=4), _ck(tmp_path / "b"), seed=3, fp="f")
    assert result.resumed_from == 2 and result.epochs_run == 4
    assert all(h["seconds"] > 0 for h in result.history)       # epochs 1-2 timed before the interruption
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_checkpoint_with_other_fingerprint_is_not_resumed(tmp_path):
    train_ds, val_ds = _data(32, 0), _data(16, 1)
    train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=2), _ck(tmp_path), seed=0, fp="old")
    result = train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=2), _ck(tmp_path), seed=0, fp="new")
    assert result.resumed_from is None and result.epochs_run == 2


def test_a_checkpoint_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    train_ds, val_ds = _data(32, 0), _data(16, 1)
    train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=1), _ck(tmp_path), seed=0, fp="x")

    class Killed(Exception):
        pass

    def killed_midway(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise Killed

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(Killed):
        train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=2), _ck(tmp_path), seed=0, fp="x")
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]     # no temporaries left


def test_fingerprint_ignores_max_epochs_only():
    a = fingerprint(CFG, 0, {"x": 1})
    assert a == fingerprint(dataclasses.replace(CFG, max_epochs=99), 0, {"x": 1})
    assert a != fingerprint(dataclasses.replace(CFG, lr=0.2), 0, {"x": 1})
    assert a != fingerprint(CFG, 1, {"x": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on the GPU machine)")
def test_trains_on_cuda_with_bf16_autocast(tmp_path):
    cfg = dataclasses.replace(CFG, device="cuda", amp=True, max_epochs=3)
    result = train(_model(), _data(96, 0), _data(32, 1), cfg, _ck(tmp_path), seed=0, fp="x")
    assert all(np.isfinite(h["val_loss"]) for h in result.history)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def _truncate(path, keep: float = 0.5) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return data


class Killed(BaseException):
    pass


def _interrupted_after(epoch: int):
    """An on_epoch that stops the run once ``epoch`` is checkpointed, as a kill would: the run's
    last.pt and last.prev.pt stay as a run in progress leaves them."""
    def on_epoch(e, _row):
        if e == epoch:
            raise Killed
    return on_epoch


def _train_interrupted(ck, epoch, train_ds, val_ds, seed, fp, max_epochs=4):
    with pytest.raises(Killed):
        train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=max_epochs), ck, seed=seed, fp=fp,
              on_epoch=_interrupted_after(epoch))


def test_a_truncated_last_checkpoint_is_moved_aside_and_the_previous_one_resumed(tmp_path, capsys):
    train_ds, val_ds = _data(64, 0), _data(16, 1)
    cfg = dataclasses.replace(CFG, max_epochs=4)
    straight = _model()
    train(straight, train_ds, val_ds, cfg, _ck(tmp_path / "a"), seed=3, fp="f")

    ck = _ck(tmp_path / "b")
    _train_interrupted(ck, 3, train_ds, val_ds, seed=3, fp="f")
    assert torch.load(ck.previous, weights_only=True)["epoch"] == 2          # the one before is kept
    _truncate(ck.last)
    with pytest.raises((RuntimeError, OSError)) as died:                     # what every run used to die of
        torch.load(ck.last, weights_only=True)
    capsys.readouterr()

    resumed = _model()
    result = train(resumed, train_ds, val_ds, cfg, ck, seed=3, fp="f")
    err = capsys.readouterr().err
    assert f"warning: {ck.last}: cannot load the checkpoint ({type(died.value).__name__}: {str(died.value)[:60]}" in err
    assert result.resumed_from == 2 and result.epochs_run == 4              # epoch 3 is run again
    aside = list(ck.last.parent.glob("last.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].name in err
    assert torch.load(ck.last, weights_only=True)["epoch"] == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)                            # as if never interrupted
    assert not ck.previous.exists()                                           # a finished run keeps no fallback
    assert train(_model(), train_ds, val_ds, cfg, ck, seed=3, fp="f").resumed_from == 4
    assert "warning" not in capsys.readouterr().err                           # nothing left to trip over


def test_with_no_loadable_checkpoint_training_starts_afresh(tmp_path, capsys):
    train_ds, val_ds = _data(32, 0), _data(16, 1)
    ck = _ck(tmp_path)
    _train_interrupted(ck, 2, train_ds, val_ds, seed=0, fp="x")
    ck.last.write_bytes(b"\x80\x02garbage, not a checkpoint")
    _truncate(ck.previous, keep=0.0)
    result = train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=2), ck, seed=0, fp="x")
    assert result.resumed_from is None and result.epochs_run == 2
    err = capsys.readouterr().err
    assert f"{ck.last}: cannot load" in err and f"{ck.previous}: cannot load" in err and "starting afresh" in err
    assert len(list(tmp_path.glob("*.corrupt-*"))) == 2
    assert torch.load(ck.last, weights_only=True)["epoch"] == 2


def test_deleting_last_pt_starts_over_whatever_the_previous_one_holds(tmp_path):
    train_ds, val_ds = _data(32, 0), _data(16, 1)
    ck = _ck(tmp_path)
    _train_interrupted(ck, 2, train_ds, val_ds, seed=0, fp="x")
    ck.last.unlink()
    assert ck.previous.exists()
    result = train(_model(), train_ds, val_ds, dataclasses.replace(CFG, max_epochs=2), ck, seed=0, fp="x")
    assert result.resumed_from is None and result.epochs_run == 2


def test_every_checkpoint_is_written_through_atomic_path(tmp_path, monkeypatch):
    """atomic_path is what survives kill -9 (tests/common/test_io.py kills a real writer)."""
    import ctxtag.tagger.train as tagger_train

    written = []
    real = tagger_train.atomic_path

    def spy(path):
        written.append(path.name)
        return real(path)

    monkeypatch.setattr(tagger_train, "atomic_path", spy)
    train(_model(), _data(32, 0), _data(16, 1), dataclasses.replace(CFG, max_epochs=2), _ck(tmp_path), seed=0, fp="x")
    assert {"best.pt", "last.pt", "last.prev.pt"} <= set(written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]      # the fallback removed at the end
