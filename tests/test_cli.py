import json
import time

import pandas as pd
import pytest
import yaml

from ctxtag.cli import main
from tests.conftest import closed_port


def test_bad_input_exits_2_naming_file(tmp_path, capsys):
    bad = tmp_path / "playlists.csv"
    pd.DataFrame({"playlist_id": [1], "title": ["party"]}).to_csv(bad, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {"playlists": str(bad), "tracks": None,
                                                "reports": str(tmp_path / "r")}}))
    assert main(["--params", str(params), "label"]) == 2                 # its only file refused
    err = capsys.readouterr().err
    assert f"{bad}: missing required column(s)" in err and "no readable input left" in err
    assert not (tmp_path / "r" / "labels.json").exists()


def test_ingest_with_every_drop_refused_exits_2_and_with_one_good_drop_goes_on(tmp_path, capsys):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "a.parquet").write_bytes(b"PAR1 not parquet")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {
        "listening_logs": str(drops), "incoming_logs": str(tmp_path / "none"), "tracks": None,
        "lake": str(tmp_path / "lake"), "reports": str(tmp_path / "r"), "quarantine": str(tmp_path / "q")}}))
    assert main(["--params", str(params), "ingest-logs"]) == 2
    assert "no readable input left" in capsys.readouterr().err
    (drops / "b.csv").write_text("user_id,track_id,timestamp,device,network\nu1,t1,2026-01-05T09:00:00Z,phone,wifi\n")
    assert main(["--params", str(params), "ingest-logs"]) == 0
    assert f"error: {drops / 'a.parquet'}: file refused" in capsys.readouterr().err
    assert len(list((tmp_path / "lake").rglob("part-*.parquet"))) == 1


def test_bad_params_exit_2(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("labels: {min_playlists: many}\n")
    assert main(["--params", str(params), "label"]) == 2
    assert "labels.min_playlists" in capsys.readouterr().err


def test_a_params_file_that_is_not_there_is_an_error_not_the_defaults(tmp_path, capsys):
    missing = tmp_path / "typo.yaml"
    assert main(["--params", str(missing), "summary"]) == 2
    assert f"--params {missing}: no such file" in capsys.readouterr().err


def test_title_agreement_on_a_small_reference(tmp_path, capsys):
    ref = tmp_path / "titles.tsv"
    ref.write_text("playlist_id\teditor\ttitle\tmatches\n1\t0\t#Workout!!\tworkout\n"
                   "2\t0\tcafé\tcar\n3\t0\tlove songs\tlove\n", encoding="utf-8")
    assert main(["title-agreement", "--titles", str(ref), "--out", str(tmp_path / "a.json")]) == 0
    report = json.loads((tmp_path / "a.json").read_text())
    assert (report["compared"], report["agree"]) == (2, 1)
    assert report["disagreements"][0]["title"] == "café"


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "3  refused" in out and "4  a data quality gate failed" in out and "5  a service is unreachable" in out


@pytest.mark.parametrize("command", [["promote"], ["rollback", "--to", "1"], ["register"], ["audit"]])
def test_registry_commands_with_mlflow_unreachable_exit_5_in_one_line(command, tmp_path, mlflow_env, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    if command != ["promote"]:                       # promote keeps the bounded defaults, the rest fail fast
        mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_env.chdir(tmp_path)                       # embedded defaults; nothing here to change
    started = time.monotonic()
    assert main(command) == 5
    assert time.monotonic() - started < 60           # MLflow's own defaults: ~4 minutes of retries
    err = capsys.readouterr().err
    assert err.startswith(f"ctxtag {command[0]}: MLflow at {uri} unreachable: ConnectionRefusedError: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []            # no local store created instead


def test_a_server_that_never_answers_is_unreachable_too_after_the_timeout(tmp_path, mlflow_env, capsys):
    """A real socket that accepts connections (the kernel does) and never answers: a hung server."""
    import socket

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
        mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mlflow_env.chdir(tmp_path)
        started = time.monotonic()
        assert main(["promote"]) == 5
        assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert err.startswith(f"ctxtag promote: MLflow at {uri} unreachable: ") and "timed out" in err.lower()
    assert err.count("\n") == 1
