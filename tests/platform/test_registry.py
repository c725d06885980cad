"""The MLflow registry flow through the real CLI on the real (small) pipeline's runs:
register -> @challenger, gate -> @champion, refusal, forced promotion, rollback, audit trail."""

from __future__ import annotations

import json
import uuid

import mlflow
import pytest
import yaml

from tests.conftest import run_tool


def _ctxtag(project, params_file, *args, ok=True):
    out = run_tool(project, "ctxtag", "--params", params_file, *args, ok=ok)
    return json.loads(out) if ok else out


@pytest.fixture
def variants(dvc_project):
    """Two params files naming a registry model of this test only; one registers the other loss."""
    name = f"tagger-test-{uuid.uuid4().hex[:6]}"
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["registry"]["model_name"] = name
    main = dvc_project / f"params-{name}.yaml"
    main.write_text(yaml.safe_dump(params))
    params["train"]["loss"] = "none"
    other = dvc_project / f"params-{name}-none.yaml"
    other.write_text(yaml.safe_dump(params))
    yield name, main.name, other.name
    main.unlink()
    other.unlink()


@pytest.mark.slow
def test_register_promote_refuse_force_and_roll_back(dvc_project, variants):
    name, main, other = variants
    first = _ctxtag(dvc_project, main, "register", "--why", "weekly retrain")
    assert first["version"] == "1" and first["new_version"]
    again = _ctxtag(dvc_project, main, "register")
    assert again["version"] == "1" and not again["new_version"]          # reruns do not duplicate
    promoted = _ctxtag(dvc_project, main, "promote", "--why", "first champion")
    assert promoted["promoted"] and promoted["gate"]["reasons"] == ["no champion yet"]

    second = _ctxtag(dvc_project, other, "register", "--why", "other loss")
    assert second["version"] == "2"
    proc = _ctxtag(dvc_project, other, "promote", ok=False)
    if proc.returncode == 3:                        # refused: the reasons are printed
        assert "not promoted" in proc.stderr and ("ROC-AUC" in proc.stderr)
        forced = _ctxtag(dvc_project, other, "promote", "--force", "--why", "hotfix")
        assert forced["promoted"] and not forced["gate"]["passed"]
    else:                                            # passed: macro AUC not worse, no big drop
        assert proc.returncode == 0, proc.stderr
        gate = json.loads(proc.stdout)["gate"]
        assert gate["challenger_macro_auc"] >= gate["champion_macro_auc"]
        assert max(gate["context_drops"].values()) <= 0.02

    back = _ctxtag(dvc_project, main, "rollback", "--why", "bad canary")
    assert back["champion"] == "1" and back["previous"] == "2"

    mlflow.set_tracking_uri(f"sqlite:///{dvc_project / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    events = _ctxtag(dvc_project, main, "audit")["events"]
    actions = [e["action"] for e in events]
    assert actions[:3] == ["register", "promote", "register"] and actions[-1] == "rollback"
    assert all(e["who"] and e["when"] for e in events)
    assert events[-1]["why"] == "bad canary" and events[1]["why"] == "first champion"


@pytest.mark.slow
def test_rollback_without_history_and_promote_without_challenger_are_refused(dvc_project, variants):
    _, main, _ = variants
    _ctxtag(dvc_project, main, "register")
    _ctxtag(dvc_project, main, "promote")
    proc = _ctxtag(dvc_project, main, "rollback", ok=False)
    assert proc.returncode == 3 and "no earlier champion" in proc.stderr


@pytest.mark.slow
def test_release_registers_and_promotes_every_family_in_one_command(dvc_project, tmp_path):
    """What make demo runs: both families registered and through their gates, the context champion's
    features published (into a served store of this test's: the project's serves other tests);
    rerun, nothing moves."""
    tag = uuid.uuid4().hex[:6]
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["registry"].update(model_name=f"release-tagger-{tag}", context_model_name=f"release-context-{tag}",
                              embeddings_model_name=f"release-embeddings-{tag}")
    params["paths"]["online"] = str(tmp_path / "online")
    params_file = dvc_project / f"params-release-{tag}.yaml"
    params_file.write_text(yaml.safe_dump(params))
    try:
        first = _ctxtag(dvc_project, params_file.name, "release", "--why", "demo")
        published = first.pop("published")
        assert set(first) == {"tagger", "context", "embeddings"}
        assert published["model"] == f"release-context-{tag}/1" and published["changed"]
        assert published["listening"] == f"release-embeddings-{tag}/1"
        for family, r in first.items():
            assert r["version"] == "1" and r["promoted"], family
            assert r["gate"]["reasons"] == ["no champion yet"], family
        # lineage: the DVC lock hashes of what made each version, shown by ctxtag audit
        lock = yaml.safe_load((dvc_project / "dvc.lock").read_text())["stages"]
        loss = params["train"]["loss"]
        for family, stages in (("tagger", [f"train@{loss}"]), ("context", [f"train@{loss}", "user_models"]),
                               ("embeddings", ["embeddings"])):
            shown = _ctxtag(dvc_project, params_file.name, "audit", "--family", family)
            assert shown["versions"]["1"]["aliases"] == ["challenger", "champion"]
            record = shown["versions"]["1"]["lineage"]
            assert record["mlflow_run"] == first[family]["run_id"] and set(record["dvc"]) == set(stages)
            for stage in stages:
                assert record["dvc"][stage]["deps"] == {d["path"]: d["md5"] for d in lock[stage]["deps"]}
            assert record["git"] == {"commit": None, "dirty": None}          # the fixture is not a git repo
        again = _ctxtag(dvc_project, params_file.name, "release")
        assert not again.pop("published")["changed"]
        assert all(r["version"] == "1" and not r["new_version"] and not r["promoted"] for r in again.values())
        assert all(r["reasons"] == ["already champion"] for r in again.values())
    finally:
        params_file.unlink()


def test_a_registry_that_does_not_answer_is_never_read_as_no_alias(tmp_path, monkeypatch):
    """alias_version None means "no such alias": the gate then passes with "no champion yet". A
    server that is down must raise instead, or promotion would skip the comparison."""
    from mlflow.exceptions import MlflowException

    from ctxtag.platform.registry import alias_version
    from tests.conftest import closed_port

    local = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    local.create_registered_model("m")
    assert alias_version(local, "m", "champion") is None                  # no alias
    assert alias_version(local, "nope", "champion") is None               # no model
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(MlflowException):
        alias_version(down, "m", "champion")
