"""`ctxtag evaluate` with MLflow unreachable: one warning, no exception (its reports are written
before it logs into the training runs)."""

from __future__ import annotations

from ctxtag.config import Params
from ctxtag.stages.evaluate import _log_to_mlflow
from tests.conftest import closed_port


def test_mlflow_unreachable_is_one_warning(tmp_path, mlflow_env, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_env.chdir(tmp_path)
    _log_to_mlflow(Params(), {"none": {"observed": {"macro": {"roc_auc": 0.7}}}})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: MLflow tracking at {uri} failed") and "Connection refused" in err[0]
