import math

import torch

from ctxtag.common.early_stopping import EarlyStopping


def _model(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best_weights():
    model = _model(0.0)
    stop = EarlyStopping(model, patience=2)
    stops = []
    for epoch, loss in enumerate([1.0, 0.5, 0.49995, 0.7]):      # 0.49995: not better by > 1e-4
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        stops.append(stop.step(loss))
    assert stops == [False, False, False, True]
    assert stop.restore().weight.item() == 1.0                     # the epoch of loss 0.5


def test_higher_is_better_and_nan_never_improves():
    model = _model(0.0)
    stop = EarlyStopping(model, patience=1, higher=True)
    assert not stop.step(0.6)
    with torch.no_grad():
        model.weight.fill_(9.0)
    assert stop.step(math.nan)
    assert stop.restore().weight.item() == 0.0
