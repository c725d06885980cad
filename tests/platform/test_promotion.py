"""The promotion gate's rule (ctxtag.platform.promotion.decide), a pure function; promote and
rollback with the MLflow server gone."""

import numpy as np
import pytest

from ctxtag.platform.promotion import decide
from tests.conftest import MlflowServer

CONTEXTS = ("party", "sleep", "car")


def test_no_champion_passes():
    result = decide(np.array([0.6, 0.7, 0.5]), None, CONTEXTS, 0.02)
    assert result.passed and result.champion_macro_auc is None
    assert result.challenger_macro_auc == 0.6


def test_better_macro_and_small_drops_pass():
    result = decide(np.array([0.80, 0.71, 0.60]), np.array([0.70, 0.72, 0.60]), CONTEXTS, 0.02)
    assert result.passed
    assert result.context_drops["sleep"] == 0.72 - 0.71


def test_lower_macro_auc_is_refused_with_both_figures():
    result = decide(np.array([0.60, 0.70, 0.60]), np.array([0.70, 0.70, 0.60]), CONTEXTS, 0.5)
    assert not result.passed
    assert any("macro ROC-AUC 0.6333 < champion's 0.6667" in r for r in result.reasons)


def test_one_context_beyond_the_margin_is_refused_even_if_macro_improves():
    result = decide(np.array([0.95, 0.66, 0.90]), np.array([0.70, 0.70, 0.60]), CONTEXTS, 0.02)
    assert not result.passed
    assert result.reasons == ["sleep: ROC-AUC down 0.0400 (> 0.02)"]


def test_contexts_without_an_auc_are_left_out_of_means_and_drops():
    # a context with no test positives has no AUC: each version's macro AUC is over its finite ones
    result = decide(np.array([0.8, np.nan, 0.7]), np.array([0.7, 0.6, np.nan]), CONTEXTS, 0.02)
    assert result.passed and set(result.context_drops) == {"party"}
    assert np.allclose([result.challenger_macro_auc, result.champion_macro_auc], [0.75, 0.65])
    refused = decide(np.array([0.8, np.nan, 0.7]), np.array([0.7, 0.9, np.nan]), CONTEXTS, 0.02)
    assert not refused.passed                        # 0.75 < 0.80: the sleep AUC it lost still counts


@pytest.mark.slow
def test_promote_and_rollback_with_the_server_gone_fail_clearly_and_change_nothing(tmp_path, mlflow_env, capsys):
    """A real `mlflow server` holding a champion and its audit trail, then killed (SIGKILL)."""
    import time

    import mlflow

    from ctxtag.cli import main
    from ctxtag.config import Params
    from ctxtag.platform.registry import ensure_registered, open_client, record

    name = Params().registry.model_name
    server = MlflowServer(tmp_path / "mlflow-server")
    try:
        mlflow_env.setenv("MLFLOW_TRACKING_URI", server.uri)
        client = open_client(Params())
        ensure_registered(client, name, "test")
        for version in ("1", "2"):
            run = client.create_run(mlflow.get_experiment_by_name(Params().train.experiment).experiment_id)
            client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
            client.set_registered_model_alias(name, "champion", version)
            record(client, name, {"action": "promote", "version": version, "previous": None if version == "1" else "1"})
        client.set_registered_model_alias(name, "challenger", "1")
    finally:
        server.kill()

    mlflow_env.chdir(tmp_path)
    capsys.readouterr()                                       # the set-up's own MLflow logging
    for command in (["rollback", "--why", "bad canary"], ["promote", "--force", "--why", "hotfix"]):
        started = time.monotonic()
        assert main(command) == 5
        assert time.monotonic() - started < 60
        err = capsys.readouterr().err
        assert err.startswith(f"ctxtag {command[0]}: MLflow at {server.uri} unreachable: ConnectionRefusedError")
        assert err.count("\n") == 1 and "Traceback" not in err

    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{server.db}", registry_uri=f"sqlite:///{server.db}")
    model = store.get_registered_model(name)                 # the registry as the server left it
    assert {k: str(v) for k, v in model.aliases.items()} == {"champion": "2", "challenger": "1"}
    assert sorted(k for k in model.tags if k.startswith("audit.")) == ["audit.0001", "audit.0002"]


def test_a_champion_that_cannot_be_loaded_is_scored_as_absent_and_said_so(monkeypatch):
    """A champion registered in an older format (no checked files: serving cannot load it either)
    must not block every promotion: the gate compares with no champion and says why. Any other
    failure of the scoring is raised, never read as "no champion"."""
    from ctxtag.config import Params
    from ctxtag.platform import promotion
    from ctxtag.platform.registry import Unloadable

    params = Params()

    def score(_params, version):
        if version == "1":
            raise Unloadable("ctxtag-audio-tagger/1 was registered without tagger or its sha256")
        return np.full(len(params.contexts), 0.7)

    monkeypatch.setattr(promotion, "tagger_test_auc", score)
    result = promotion.gate(params, "2", "1", "tagger")
    assert result.passed and result.champion_macro_auc is None
    assert result.reasons[0].startswith("champion v1 cannot be scored") and "no champion yet" in result.reasons

    def broken(_params, version):
        if version == "1":
            raise KeyError("a bug")
        return np.full(len(params.contexts), 0.7)

    monkeypatch.setattr(promotion, "tagger_test_auc", broken)
    with pytest.raises(KeyError):
        promotion.gate(params, "2", "1", "tagger")
