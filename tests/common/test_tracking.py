"""The one way runs log metrics: flattened, finite, with names MLflow accepts; each epoch once;
MLflow unreachable is bounded in time and one warning."""

import math
import time

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from ctxtag.common.tracking import (
    Tracker,
    bound_http_requests,
    finite_metrics,
    flatten,
    log_missing_epochs,
    metric_name,
    setup_mlflow,
    unreachable,
)
from tests.conftest import closed_port


def test_nested_reports_flatten_to_dotted_names():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert flatten({"x": 1}, "pre") == {"pre.x": 1}


def test_non_finite_missing_and_non_numeric_values_are_left_out():
    got = finite_metrics({"auc": 0.7, "nan": math.nan, "inf": math.inf, "none": None, "n": 3, "flag": True,
                          "name": "cnn", "per_context": {"car": 0.5, "sad": None}})
    assert got == {"auc": 0.7, "n": 3.0, "per_context.car": 0.5}


def test_names_are_sanitised_once_for_every_caller():
    assert metric_name("accuracy@3") == "accuracy_at_3"
    assert metric_name("hit_rate@10 (new)") == "hit_rate_at_10 _new_"
    assert finite_metrics({"stream": {"accuracy@3": 0.9}}, "audio") == {"audio.stream.accuracy_at_3": 0.9}


def test_numpy_scalars_are_numbers_too():
    import numpy as np

    assert finite_metrics({"pairs": np.int64(12), "auc": np.float32(0.5), "bad": np.float64("nan")}) == \
        {"pairs": 12.0, "auc": 0.5}


# --- MLflow unreachable or gone: bounded, one warning, then nothing --------------------------------
@pytest.fixture(autouse=True)
def _mlflow_env(mlflow_env):
    """MLflow keeps its URI and experiment in the environment: each test starts without them."""


def test_http_retries_are_bounded_unless_the_user_set_them(monkeypatch):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    bound_http_requests()
    # the names are the installed MLflow's own: it reads our defaults, and the user's setting wins
    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()) == (2, 1)
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 60


@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_an_unreachable_server_is_one_warning_in_bounded_time_then_nothing(monkeypatch, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    tracker = Tracker("ctxtag-test")
    assert time.monotonic() - started < 60           # MLflow's own defaults retry for ~4 minutes
    assert not tracker.on and "Connection refused" in tracker.failure
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and uri in err[0] and "Connection refused" in err[0] and "going on" in err[0]
    called = []
    assert tracker.call(called.append, 1) is None and called == []
    assert capsys.readouterr().err == ""             # warned once, not at every call
    assert Tracker(None).call(called.append, 1) is None and called == []     # log_mlflow: false


def test_unreachable_tells_a_server_that_is_down_from_other_mlflow_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow.set_tracking_uri(uri)
    with pytest.raises(MlflowException) as down:
        mlflow.MlflowClient().get_registered_model("m")
    assert unreachable(down.value) == (f"MLflow at {uri} unreachable: ConnectionRefusedError: [Errno 111] Connection "
                                       f"refused (request to {uri}/api/2.0/mlflow/registered-models/get)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")        # set by mlflow.set_tracking_uri
    setup_mlflow("ctxtag-test", tmp_path)            # a store that answers: "no such model" is not "down"
    with pytest.raises(MlflowException) as missing:
        mlflow.MlflowClient().get_registered_model("m")
    assert unreachable(missing.value) is None
    assert unreachable(ConnectionRefusedError(111, "not MLflow's")) is None


def test_log_missing_epochs_logs_every_epoch_exactly_once(tmp_path):
    setup_mlflow("ctxtag-test", tmp_path)
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "lr": 0.1, "seconds": math.nan if e == 2 else 1.0}
               for e in (1, 2, 3)]
    with mlflow.start_run() as run:
        assert log_missing_epochs(history[:1]) == [1]
        assert log_missing_epochs(history[:2]) == [2]        # what a resumed run finds missing
        assert log_missing_epochs(history) == [3]
        assert log_missing_epochs(history) == []
    client = mlflow.MlflowClient()
    for key in ("train_loss", "val_loss", "lr"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "seconds")) == [1, 3]   # NaN: never
