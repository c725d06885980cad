"""`ctxtag user-models` with MLflow unreachable: one warning, no exception (its models and reports
are written before it logs)."""

from __future__ import annotations

from ctxtag.config import Params
from ctxtag.stages.user_models import _log_mlflow
from tests.conftest import closed_port


def test_mlflow_unreachable_is_one_warning(mlflow_env, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _log_mlflow(Params(), {"cold_user": {}, "warm": {}}, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: MLflow tracking at {uri} failed") and "Connection refused" in err[0]
