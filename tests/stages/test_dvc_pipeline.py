"""A real `dvc repro` of the pipeline on a small generated world (the `dvc_project` fixture)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.conftest import dvc as _dvc
from tests.conftest import run_tool as _run


@pytest.mark.slow
def test_repro_builds_every_output(dvc_project):
    project = dvc_project
    for rel in ("data/labelled/labels.csv", "data/labelled/counts.csv", "data/weights/weights.npz",
                "data/splits/split.csv", "data/quarantine/playlists.jsonl",
                "reports/plots/cooccurrence.png", "dvc.lock"):
        assert (project / rel).exists(), rel
    labels = json.loads((project / "reports/labels.json").read_text())
    assert labels["dropped_too_many_tracks"] > 0 and labels["playlists_kept"] > 0
    assert 0 < labels["vs_truth"]["label_recall"] < 1          # playlists miss some true labels
    split = json.loads((project / "reports/split.json").read_text())
    assert split["overlap"] == {"artists": 0, "albums": 0}
    ingested = json.loads((project / "reports/ingest_logs.json").read_text())
    # the generated logs are clean but for the odd same-second repeat, which must be quarantined
    assert ingested["rows_read"] == ingested["rows_valid"] + ingested["rows_quarantined"]
    assert set(ingested["quarantine_reasons"]) <= {"duplicate event"}
    assert ingested["events_written"] == ingested["rows_valid"] > 0
    assert list((project / "data/lake/listening_logs").glob("date=*/part-*.parquet"))
    gates = json.loads((project / "reports/quality.json").read_text())      # the GX gates ran and passed
    assert set(gates) == {"playlists", "listening_logs", "labels", "features"}
    assert all(g["passed"] for g in gates.values())
    assert (project / "data/gx/gx/uncommitted/data_docs/local_site/index.html").exists()
    published = json.loads((project / "reports/publish_features.json").read_text())
    assert published["users"] > 0 and published["materialize_chunks"] == 0      # offline only: nothing served
    assert not (project / "data/feast/online.db").exists() or _online_rows(project / "data/feast/online.db") == 0
    tracks = json.loads((project / "reports/track_features.json").read_text())
    assert tracks["tracks"] == published["tracks"] == len(pd.read_csv(project / "data/raw/tracks.csv"))
    ids = pd.read_csv(project / "data/splits/split.csv", dtype=str)
    lab = pd.read_csv(project / "data/labelled/labels.csv", dtype={"track_id": str})
    assert sorted(ids["track_id"]) == sorted(lab["track_id"])


@pytest.mark.slow
def test_repro_trains_tracks_and_reports_every_configuration(dvc_project, monkeypatch):
    project = dvc_project
    for cfg in ("none", "neg_ignore_zeros"):
        assert (project / f"data/models/{cfg}/best.pt").exists()
        assert json.loads((project / f"reports/train/{cfg}.json").read_text())["epochs_run"] == 2
    table = (project / "reports/table2.md").read_text()
    assert "| none |" in table and "| neg_ignore_zeros |" in table and "complete true labels" in table
    report = json.loads((project / "reports/evaluate.json").read_text())
    for cfg in ("none", "neg_ignore_zeros"):
        macro = report["configs"][cfg]["observed"]["macro"]
        assert 0 <= macro["hamming_loss"] <= 1 and 0 <= macro["roc_auc"] <= 1
        assert set(report["configs"][cfg]["truth"]["per_context"]) == set(yaml.safe_load(
            (project / "params.yaml").read_text())["contexts"])
    assert (project / "reports/plots/roc_pr_neg_ignore_zeros.png").stat().st_size > 10_000

    import mlflow

    monkeypatch.chdir(project)                    # artifact locations are relative to the project root
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("ctxtag-audio-tagger")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["train.loss"] for r in runs) == ["neg_ignore_zeros", "none"]
    for r in runs:
        assert len(client.get_metric_history(r.info.run_id, "val_loss")) == 2
        assert "test_truth_roc_auc" in r.data.metrics
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"plots", "table2.md", "model_summary.txt",
                                                                         "checkpoint"}
        assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]
    # the checkpoint becomes a pyfunc when it is registered (ctxtag register), not before
    assert mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list") == [] or \
        all("sha256.tagger" in m.tags for m in mlflow.search_logged_models(experiment_ids=[exp.experiment_id],
                                                                           output_format="list"))


@pytest.mark.slow
def test_repro_trains_and_compares_the_user_models(dvc_project):
    project = dvc_project
    streams = json.loads((project / "reports/streams.json").read_text())
    assert streams["streams"] > 0 and streams["without_audio"] == 0
    report = json.loads((project / "reports/user_models.json").read_text())
    assert set(report) == {"cold_user", "cold_track", "warm"}
    for kind, r in report.items():
        assert r["sizes"]["test"] > 0 and r["sizes"]["train"] > r["sizes"]["test"]
        for model in ("audio", "audio_user", "situational", "audio_user_situation"):
            s = r[model]["stream"]
            assert 0 <= s["accuracy"] <= s["weighted_accuracy@3"] <= s["accuracy@3"] <= 1, (kind, model)
            assert 0 <= r[model]["satisfaction"]["f1"] <= 1
    table = (project / "reports/user_models.md").read_text()
    assert table.count("| warm |") == 6 and "audio + user + device/time" in table      # 4 models, 2 chance rows
    assert "| warm | chance: random scores |" in table and "Paired differences" in table
    for name in ("audio_user.pt", "audio_user_situation.pt", "situational.npz"):
        assert (project / "data/user_models/cold_user" / name).exists()

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("ctxtag-user-models")
    # the experiment also holds the registered pyfunc's "context-model" run when the registry tests ran first
    runs = [r for r in client.search_runs([exp.experiment_id]) if "split_kind" in r.data.tags]
    assert sorted(r.data.tags["split_kind"] for r in runs) == ["cold_track", "cold_user", "warm"]
    assert all("audio_user_situation.accuracy_at_3" in r.data.metrics for r in runs)


@pytest.mark.slow
def test_repro_reports_intervals_chance_rows_and_robustness(dvc_project):
    project = dvc_project
    evaluate = json.loads((project / "reports/evaluate.json").read_text())
    observed = evaluate["bootstrap"]["observed"]
    assert observed["baseline"] == "none" and set(observed["paired"]) == {"neg_ignore_zeros"}
    for cfg, res in evaluate["configs"].items():
        ci, auc = observed["intervals"][cfg]["roc_auc"], res["observed"]["macro"]["roc_auc"]
        assert ci["low"] <= auc <= ci["high"], cfg
    assert "Paired differences from `none`" in (project / "reports/table2.md").read_text()
    # the floor every figure is read against: two chance taggers with their intervals
    chance = evaluate["chance"]
    assert set(chance) == {"chance: random scores", "chance: training prevalence"}
    assert chance["chance: training prevalence"]["observed"]["macro"]["roc_auc"] == 0.5
    ci = evaluate["chance_bootstrap"]["observed"]["intervals"]["chance: random scores"]["roc_auc"]
    assert ci["low"] < 0.5 + 0.1 and ci["high"] > 0.5 - 0.1
    assert "| chance: random scores |" in (project / "reports/table2.md").read_text()
    users = json.loads((project / "reports/user_models_full.json").read_text())
    for kind, r in users.items():
        assert {"random", "popularity"} <= set(r) and "satisfaction_all" in r["audio_user"], kind
        assert "audio_user_situation - situational" in r["_bootstrap"]["paired"], kind
    weights = json.loads((project / "reports/weights.json").read_text())
    assert weights["fit_on"] == "train" and 0 < weights["fitted_tracks"] < weights["tracks"]
    robust = json.loads((project / "reports/robustness.json").read_text())
    perturbations = yaml.safe_load((project / "params.yaml").read_text())["robustness"]["perturbations"]
    assert list(robust["perturbations"]) == ["clean", *perturbations, "whole_track"] and robust["tracks"] > 0
    assert set(robust["bootstrap"]["paired"]) == {*perturbations, "whole_track"}
    assert robust["windows_per_track"]["min"] >= 1
    # the history embedding was fitted without what the cold splits hold out
    held = json.loads((project / "reports/publish_features.json").read_text())["history_fit_held_out"]
    assert held["users"] > 0 and held["tracks"] > 0


@pytest.mark.slow
def test_summary_prints_the_headline_figures_and_tables(dvc_project):
    out = _run(dvc_project, "ctxtag", "summary")
    assert "ctxtag: labelled dataset" in out and "tracks_after_balancing" in out
    assert "neg_ignore_zeros" in out and "cold_user" in out          # Table 2 and the user-model table
    assert "reports/plots/cooccurrence.png" in out
    # where the run's time went: every step of the pipeline, by the command that ran it
    assert "time per step" in out and "train@neg_ignore_zeros" in out and "user-models" in out
    # not a terminal (a log, a pipe): tables are not wrapped at 80 columns
    assert any(line.startswith("| warm | audio + user + device/time |") for line in out.splitlines())


@pytest.mark.slow
def test_the_default_remote_takes_a_push_and_gives_it_back(dvc_project, tmp_path):
    import configparser
    import shutil

    ours = configparser.ConfigParser()
    ours.read(ROOT / ".dvc/config")
    name = ours["core"]["remote"]
    section = f"'remote \"{name}\"'"
    url = ours[section]["url"]                              # relative to .dvc/: inside the project
    config = dvc_project / ".dvc/config"
    original = config.read_text()
    # the project's own remote section, as the repository's .dvc/config writes it
    config.write_text(original + f"[{section}]\n    url = {url}\n")
    _dvc(dvc_project, "config", "core.remote", name)
    cache, labels = dvc_project / ".dvc/cache", dvc_project / "data/labelled/labels.csv"
    before = labels.read_bytes()
    try:
        _dvc(dvc_project, "push", "-q", "label")
        assert any((dvc_project / ".dvc" / url).rglob("*"))  # where the config says, beside the cache
        shutil.move(cache, tmp_path / "cache")              # a machine without the cache or the file
        labels.unlink()
        _dvc(dvc_project, "pull", "-q", "label")
        assert labels.read_bytes() == before
    finally:                                                # the shared project as it was
        if (tmp_path / "cache").exists():
            shutil.rmtree(cache, ignore_errors=True)
            shutil.move(tmp_path / "cache", cache)
        if not labels.exists():
            labels.write_bytes(before)
        config.write_text(original)
        shutil.rmtree(dvc_project / ".dvc" / url, ignore_errors=True)


@pytest.mark.slow
def test_dvc_metrics_are_the_headline_figures_and_the_reports_stay_whole(dvc_project):
    (shown,) = (rev["data"] for rev in json.loads(_run(dvc_project, "dvc", "metrics", "show", "--json")).values())

    def numbers(x):
        return sum(numbers(v) for v in x.values()) if isinstance(x, dict) else 1

    per_file = {path: numbers(m["data"]) for path, m in shown.items()}
    assert max(per_file.values()) <= 60 and sum(per_file.values()) <= 300, per_file
    evaluate = shown["reports/metrics/evaluate.json"]["data"]
    full = json.loads((dvc_project / "reports/evaluate.json").read_text())
    for cfg, r in evaluate["configs"].items():             # the same figures as the full report's
        assert r["observed"]["macro"]["roc_auc"] == full["configs"][cfg]["observed"]["macro"]["roc_auc"]
    assert "per_context" in next(iter(full["configs"].values()))["observed"]
    assert "reports/evaluate.json" not in shown


@pytest.mark.slow
def test_every_plot_is_also_data_that_dvc_plots_draws(dvc_project):
    rendered = json.loads(_run(dvc_project, "dvc", "plots", "show", "--json"))["data"]
    declared = [p for p in rendered if p.endswith(".csv")]
    # one CSV per PNG (ROC/PR: two), each drawn by a Vega-Lite template with its numbers filled in
    assert len(declared) == sum(2 if "roc_pr" in p else 1 for p in rendered if p.endswith(".png"))
    for path in declared:
        (plot,) = rendered[path]
        assert plot["type"] == "vega", path
        values = plot["content"]["data"]["values"]
        assert len(values) > 0 and all(v["rev"] == "workspace" for v in values), path
    heat = rendered["reports/plots/cooccurrence.csv"][0]["content"]
    assert heat["mark"]["type"] == "rect" and {"row", "column", "value"} <= set(heat["data"]["values"][0])


@pytest.mark.slow
def test_predict_prints_top_contexts_for_an_audio_file(dvc_project):
    project = dvc_project
    audio = sorted((project / "data/raw/audio").glob("*.flac"))[0]
    loss = yaml.safe_load((project / "params.yaml").read_text())["train"]["loss"]
    out = _run(dvc_project, "ctxtag", "predict", str(audio), "--top", "3", "--model", f"data/models/{loss}/best.pt")
    lines = out.strip().splitlines()[1:]                  # after "model: <checkpoint>"
    assert lines[0] == str(audio)
    contexts = set(yaml.safe_load((project / "params.yaml").read_text())["contexts"])
    assert len(lines) == 4 and all(line.split()[0] in contexts for line in lines[1:])
    assert all(0 <= float(line.split()[1]) <= 1 for line in lines[1:])


@pytest.mark.slow
def test_repro_is_incremental(dvc_project):
    project = dvc_project
    assert "Data and pipelines are up to date" in _dvc(dvc_project, "status")
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["labels"]["min_playlists"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        _dvc(project, "repro", "ingest_logs", "--force")       # the append-only lake: a no-op rerun
        assert json.loads((project / "reports/ingest_logs.json").read_text())["events_written"] == 0
        out = _dvc(project, "repro", "split")                  # the labelling chain, not the training
        assert "Stage 'synth' didn't change, skipping" in out
        assert "Running stage 'label'" in out
        labels = json.loads((project / "reports/labels.json").read_text())
        assert labels["tracks_after_balancing"] > 0
    finally:                                                   # later tests share this project
        (project / "params.yaml").write_text(original)
        _dvc(project, "repro", "split")
    assert "Data and pipelines are up to date" in _dvc(project, "status")


@pytest.mark.slow
def test_repro_learns_listening_embeddings_and_publishes_them_to_feast(dvc_project, context_champion):
    """Chen et al. stage: Table 1 for every model and duration, the by-user protocol, hit rate of
    new tracks, transfer; the AE / UE tables; and Feast serving exactly those vectors."""
    import numpy as np

    from ctxtag.platform.feature_store import open_store

    project = dvc_project
    params = yaml.safe_load((project / "params.yaml").read_text())["embeddings"]
    report = json.loads((project / "reports/embeddings.json").read_text())
    assert set(report["table1"]) == {"1s", "2s"}
    for models in report["table1"].values():
        assert set(models) == set(params["models"])
        for r in models.values():
            assert 0 <= r["test"]["auc"] <= 1 and r["test"]["pairs"] > 0 and r["cold"]["pairs"] > 0
    assert report["by_user"]["test"]["pairs"] > 0
    assert all(0 <= v["hit_rate@5"] <= 1 for v in report["hit_rate"].values())
    assert set(report["transfer"]) == {"cnn", "ae", "cnn+ae"} and report["transfer"]["ae"]["dims"] == 40
    assert "Table 1" in (project / "reports/embeddings.md").read_text()
    for plot in ("embeddings_auc", "embeddings_hit_rate", "embeddings_roc_pr"):
        assert (project / f"reports/plots/{plot}.png").stat().st_size > 5_000

    tracks = pd.read_parquet(project / "data/embeddings/track_embeddings.parquet")
    users = pd.read_parquet(project / "data/embeddings/user_embeddings.parquet")
    ae = np.stack(tracks["listening_embedding"].to_numpy())
    assert ae.shape == (len(pd.read_csv(project / "data/raw/tracks.csv")), 40)
    np.testing.assert_allclose(np.linalg.norm(ae, axis=1), 1, rtol=1e-5)
    split = pd.read_csv(project / "data/splits/split.csv", dtype=str)
    new = set(split.loc[split["split"] == "test", "track_id"])
    assert tracks.loc[tracks["track_id"].isin(new), "cold_start"].all()          # new releases: no data used
    assert not tracks["cold_start"].all()
    lake_users = set(pd.concat(pd.read_parquet(f, columns=["user_id"]) for f in
                               (project / "data/lake/listening_logs").rglob("*.parquet"))["user_id"])
    assert set(users["user_id"]) == lake_users

    # served by `ctxtag publish` (the champions' fixture): the registered version's own views
    store = open_store(project / "data/online")
    views = json.loads((project / "data/online/published.json").read_text())["listening"]["views"]
    user_view, track_view = views["user"][0], views["track"][0]
    some_user, some_track = users.iloc[3], tracks.iloc[5]
    got = store.get_online_features(
        features=[f"{user_view}:listening_embedding"], entity_rows=[{"user_id": some_user["user_id"]}]).to_dict()
    np.testing.assert_allclose(got["listening_embedding"][0], some_user["listening_embedding"], rtol=1e-6)
    got = store.get_online_features(
        features=[f"{track_view}:listening_embedding", f"{track_view}:cold_start", f"{track_view}:embedding_model"],
        entity_rows=[{"track_id": some_track["track_id"]}]).to_dict()
    assert got["embedding_model"][0] == "ctxtag-listening-embeddings/1"      # the registered version
    np.testing.assert_allclose(got["listening_embedding"][0], some_track["listening_embedding"], rtol=1e-6)
    assert got["cold_start"][0] == bool(some_track["cold_start"])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns.db'}")
    runs = mlflow.search_runs(experiment_names=["ctxtag-embeddings"])
    expected = {f"per_user-{m}-{d}s" for m in params["models"] for d in (1, 2)} | {"by_user-metric_1vs1-2s"}
    # beside the stage's runs, the registration's (ctxtag register --family embeddings) where it ran
    runs = runs[runs["tags.mlflow.runName"] != "listening-embeddings"]
    assert set(runs["tags.mlflow.runName"]) == expected
    assert runs["metrics.test.auc"].between(0, 1).all()


def _online_rows(db) -> int:
    """Rows in a Feast SQLite online store (its tables, one per feature view)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
