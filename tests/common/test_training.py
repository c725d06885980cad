import math

import pytest
import torch

from ctxtag.common.training import EarlyStopping, pick_device, run_epochs


def _model(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best_weights():
    model = _model(0.0)
    stop = EarlyStopping(2, model=model)
    stops = []
    for epoch, loss in enumerate([1.0, 0.5, 0.49995, 0.7], start=1):   # 0.49995: not better by > 1e-4
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        stops.append(stop.step(loss, epoch))
    assert stops == [False, False, False, True]
    assert (stop.best, stop.best_epoch, stop.waited) == (0.5, 2, 2)
    assert stop.restore().weight.item() == 2.0                     # the epoch of loss 0.5


def test_higher_is_better_and_nan_never_improves():
    model = _model(0.0)
    stop = EarlyStopping(2, mode="max", model=model)
    assert not stop.step(0.6, 1)
    assert not stop.step(0.60005, 2)                  # up, but not by more than 1e-4
    assert stop.waited == 1 and stop.best == 0.6
    with torch.no_grad():
        model.weight.fill_(9.0)
    assert stop.step(math.nan, 3)
    assert stop.restore().weight.item() == 0.0


def test_min_delta_zero_is_a_strict_decrease():
    stop = EarlyStopping(2, min_delta=0.0)            # the CNN tagger's rule
    assert [stop.step(x, e) for e, x in enumerate([1.0, 0.999999, 0.999999, 0.999999], 1)] == \
        [False, False, False, True]
    assert stop.best_epoch == 2
    with pytest.raises(RuntimeError):
        stop.restore()                                # no model given: no weights kept
    with pytest.raises(ValueError):
        EarlyStopping(2, mode="up")


def test_run_epochs_stops_at_patience_and_the_stopper_restores_the_best():
    model = _model(0.0)
    losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 1.5, 5: 0.1, 6: 0.0}

    def train_epoch(epoch):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        return {"train_loss": 10.0 * epoch}

    seen = []
    stopper = EarlyStopping(2, model=model)
    history = run_epochs(6, train_epoch, lambda row: {"val_loss": losses[row["epoch"]]}, stopper,
                         on_epoch=lambda row: seen.append((row["epoch"], stopper.best_epoch)))
    assert history == [{"epoch": e, "train_loss": 10.0 * e, "val_loss": losses[e]} for e in (1, 2, 3, 4)]
    assert seen == [(1, 1), (2, 2), (3, 2), (4, 2)]   # on_epoch sees the stopper's verdict on its epoch
    assert stopper.stopped and model.weight.item() == 4.0
    assert stopper.restore().weight.item() == 2.0


def test_run_epochs_monitors_the_named_column_and_continues_a_history():
    stopper = EarlyStopping(1, mode="max")
    history = run_epochs(5, lambda e: {}, lambda row: {"auc": {3: 0.9}.get(row["epoch"], 0.5)}, stopper,
                         monitor="auc", start_epoch=3, history=[{"epoch": 1}, {"epoch": 2}])
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert stopper.best_epoch == 3 and stopper.stopped


def test_run_epochs_runs_to_max_epochs_without_a_stop():
    stopper = EarlyStopping(3)
    history = run_epochs(4, lambda e: {}, lambda row: {"val_loss": -float(row["epoch"])}, stopper)
    assert len(history) == 4 and not stopper.stopped and stopper.best == -4.0
