import json

import pandas as pd
import yaml

from ctxtag.cli import main


def test_bad_input_exits_2_naming_file(tmp_path, capsys):
    bad = tmp_path / "playlists.csv"
    pd.DataFrame({"playlist_id": [1], "title": ["party"]}).to_csv(bad, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {"playlists": str(bad), "tracks": None,
                                                "reports": str(tmp_path / "r")}}))
    assert main(["--params", str(params), "label"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: missing required column(s)" in err


def test_bad_params_exit_2(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("labels: {min_playlists: many}\n")
    assert main(["--params", str(params), "label"]) == 2
    assert "labels.min_playlists" in capsys.readouterr().err


def test_title_agreement_on_a_small_reference(tmp_path, capsys):
    ref = tmp_path / "titles.tsv"
    ref.write_text("playlist_id\teditor\ttitle\tmatches\n1\t0\t#Workout!!\tworkout\n"
                   "2\t0\tcafé\tcar\n3\t0\tlove songs\tlove\n", encoding="utf-8")
    assert main(["title-agreement", "--titles", str(ref), "--out", str(tmp_path / "a.json")]) == 0
    report = json.loads((tmp_path / "a.json").read_text())
    assert (report["compared"], report["agree"]) == (2, 1)
    assert report["disagreements"][0]["title"] == "café"
