"""Great Expectations gates for real (GX 1.x file context, checkpoints, data docs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxtag.config import Params
from ctxtag.platform.gates import (
    GateFailed,
    features_suite,
    labels_suite,
    logs_suite,
    playlists_suite,
    run_gate,
)

NOW = pd.Timestamp("2026-02-01T00:00:00Z")


@pytest.fixture
def params(tmp_path) -> Params:
    p = Params()
    return dataclasses.replace(p, paths=dataclasses.replace(p.paths, data_docs=tmp_path / "gx",
                                                            quarantine=tmp_path / "quarantine"))


def _events(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "user_id": [f"u{i % 7}" for i in range(n)], "track_id": [f"t{i % 11}" for i in range(n)],
        "event_timestamp": pd.Timestamp("2026-01-05T00:00:00Z") + pd.to_timedelta(np.arange(n) * 60, "s"),
        "utc_offset_min": 60, "device": rng.choice(["phone", "car"], n), "network": "wifi",
        "age": 30.0, "gender": "f", "context": None,
    })


def _quarantined(params: Params, name: str) -> list[dict]:
    path = params.paths.quarantine / f"gate_{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_few_bad_log_rows_are_quarantined_and_the_gate_passes(params):
    ev = _events()
    ev.loc[3, "device"] = "toaster"
    ev.loc[8, "event_timestamp"] = NOW + pd.Timedelta(days=2)               # in the future
    params = dataclasses.replace(params, quality=dataclasses.replace(params.quality, max_bad_share=0.01))
    report = run_gate("listening_logs", *logs_suite(ev, params, NOW), params, "lake")
    assert report.passed and report.bad_rows == 2
    bad = {r["row"]: r for r in _quarantined(params, "listening_logs")}
    assert set(bad) == {4, 9}                                                # 1-based rows
    assert "expect_column_values_to_be_in_set(device)" in bad[4]["reason"] and "toaster" in bad[4]["raw"]
    assert "event_epoch_s" in bad[9]["reason"]
    assert (params.paths.data_docs / "gx/uncommitted/data_docs/local_site/index.html").exists()


def test_too_many_bad_rows_fail_the_gate_with_a_readable_report(params):
    ev = _events()
    ev.loc[:30, "network"] = "5g"
    dup = ev.iloc[[50]]
    ev = pd.concat([ev, dup], ignore_index=True)                             # a duplicate event
    with pytest.raises(GateFailed) as err:
        run_gate("listening_logs", *logs_suite(ev, params, NOW), params, "lake")
    text = str(err.value)
    assert "FAILED" in text and "expect_column_values_to_be_in_set(network)" in text
    assert "expect_compound_columns_to_be_unique" in text
    assert f"data docs: {params.paths.data_docs / 'gx/uncommitted/data_docs/local_site/index.html'}" in text
    assert len(_quarantined(params, "listening_logs")) == 31 + 2             # both copies of the duplicate


def test_the_report_names_the_data_docs_relative_to_the_project(params, tmp_path, monkeypatch):
    """paths.data_docs as params.yaml gives it (relative to the project), not GX's absolute file://
    URL: reports/quality.json moves with the project."""
    monkeypatch.chdir(tmp_path)
    params = dataclasses.replace(params, paths=dataclasses.replace(params.paths, data_docs=Path("data/gx")))
    report = run_gate("listening_logs", *logs_suite(_events(), params, NOW), params, "lake")
    assert report.data_docs == "data/gx/gx/uncommitted/data_docs/local_site/index.html"
    assert (tmp_path / report.data_docs).exists()


def test_label_balance_is_a_dataset_level_gate(params):
    labels = pd.DataFrame(np.eye(len(params.contexts), dtype=int).repeat(3, axis=0), columns=list(params.contexts))
    labels.insert(0, "track_id", [f"t{i}" for i in range(len(labels))])
    assert run_gate("labels", *labels_suite(labels, params), params, "labels.csv").passed
    labels["sleep"] = 0                                                       # a context vanished
    with pytest.raises(GateFailed, match=r"expect_column_mean_to_be_between\(sleep\)"):
        run_gate("labels", *labels_suite(labels, params), params, "labels.csv")


def test_features_with_nan_embeddings_or_bad_probabilities_are_caught(params):
    probs = np.full((50, len(params.contexts)), 0.5, np.float32)
    emb = np.ones((50, 8), np.float32)
    emb[4, 2] = np.nan
    probs[7, 0] = 1.5
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(50)], "context_probs": list(probs),
                           "audio_embedding": list(emb)})
    with pytest.raises(GateFailed):                                           # 2 of 50 rows: over 1 %
        run_gate("features", *features_suite(tracks, params), params, "track_features.parquet")
    reasons = {r["row"]: r["reason"] for r in _quarantined(params, "features")}
    assert "embedding_norm" in reasons[5] and "prob_max" in reasons[8]


def _playlists(titles: list[str], sizes: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"p{i}" for i in range(len(titles))]
    playlists = pd.DataFrame({"playlist_id": ids, "title": titles, "source": "pl.jsonl", "row": range(1, len(ids) + 1)})
    entries = pd.DataFrame([{"playlist_id": p, "track_id": f"t{j}", "artist_id": "a", "album_id": "b"}
                            for p, n in zip(ids, sizes, strict=True) for j in range(n)])
    return playlists, entries


def _playlist_gate(params: Params, playlists: pd.DataFrame, entries: pd.DataFrame):
    return run_gate("playlists", *playlists_suite(playlists, entries, params), params, "pl.jsonl")


def test_the_playlists_gate_checks_the_dataset_and_leaves_rows_to_the_reader(params):
    titles = ["Gym hits", "sleep", "my mix", "Party!!", "summer 2024", "road", "work focus", "misc"]
    playlists, entries = _playlists(titles, [5, 3, 8, 2, 4, 6, 1, 7])
    report = _playlist_gate(params, playlists, entries)
    assert report.passed and report.bad_rows == 0
    assert not _quarantined(params, "playlists")


def test_one_oversized_playlist_is_quarantined_not_the_batch(params):
    params = dataclasses.replace(params, quality=dataclasses.replace(params.quality, max_playlist_tracks=20,
                                                                     max_bad_share=0.2))
    titles = ["Gym hits", "sleep", "my mix", "Party!!", "summer 2024", "road", "work focus", "misc"]
    playlists, entries = _playlists(titles, [5, 3, 80, 2, 4, 6, 1, 7])
    report = _playlist_gate(params, playlists, entries)
    assert report.passed and report.bad_rows == 1
    (row,) = _quarantined(params, "playlists")
    assert row["row"] == 3 and "n_tracks" in row["reason"] and '"p2"' in row["raw"]


@pytest.mark.parametrize("change, expectation", [
    (lambda pl, en: (pl.assign(title="my mix"), en), r"expect_column_mean_to_be_between\(has_context\)"),
    (lambda pl, en: (pl.assign(title="sleep " + "x" * 120), en), r"expect_column_median_to_be_between\(title_length\)"),
    (lambda pl, en: (pl, pd.concat([en, en.iloc[[0] * 20], en.iloc[[5] * 20]], ignore_index=True)),
     r"expect_column_values_to_be_between\(n_tracks\)"),     # half the playlists oversized
    (lambda pl, en: (pl.iloc[:0], en.iloc[:0]), r"expect_table_row_count_to_be_between"),
])
def test_a_bad_playlist_dataset_fails_the_gate(params, change, expectation):
    params = dataclasses.replace(params, quality=dataclasses.replace(params.quality, max_playlist_tracks=20))
    playlists, entries = change(*_playlists(["Gym hits", "sleep", "my mix", "Party!!"], [5, 3, 8, 2]))
    with pytest.raises(GateFailed, match=expectation):
        _playlist_gate(params, playlists, entries)


def test_the_lake_gate_reads_whole_dates_a_batch_at_a_time_and_names_each_bad_row_by_its_part(params, tmp_path):
    """lake_gate over a real lake (ingested), a batch of whole dates at a time: the same report
    and quarantine whether all of it is one batch or each date is its own; a bad row is named by
    its part file and row; a copy of an event in another part of its date is still found."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctxtag.listening.lake import date_batches, ingest, lake_parts
    from ctxtag.platform.gates import lake_gate
    from tests.conftest import CONTEXTS

    drop = tmp_path / "drop.csv"
    drop.write_text("user_id,track_id,timestamp,device,network\n" + "".join(
        f"u{i},t{i % 3},2026-01-0{5 + i % 3}T10:0{i}:00Z,phone,wifi\n" for i in range(9)))
    lake = tmp_path / "lake"
    ingest([drop], lake, params.logs, CONTEXTS, now=NOW)
    first = lake_parts(lake)[0]
    events = pq.read_table(first).to_pandas()
    later = events.iloc[[0, 0]].copy()
    later["device"] = ["toaster", later["device"].iloc[0]]        # row 1: bad; row 2: a copy of an event
    later["user_id"] = [events["user_id"].iloc[0] + "x", events["user_id"].iloc[0]]
    pq.write_table(pa.Table.from_pandas(later, schema=pq.read_schema(first), preserve_index=False),
                   first.parent / "part-ffffffffffffffff.parquet")
    params = dataclasses.replace(params, paths=dataclasses.replace(params.paths, lake=lake),
                                 quality=dataclasses.replace(params.quality, max_bad_share=1.0))
    got = {}
    for rows in (10_000, 1):                                        # one batch; a date a batch
        report = lake_gate(params, NOW, max_rows=rows)
        got[rows] = (report.rows, report.bad_rows, sorted(report.failed), _quarantined(params, "listening_logs"))
    assert got[1] == got[10_000]
    rows, bad, failed, quarantined = got[1]
    assert (rows, bad) == (11, 3)                                   # the toaster, and both copies
    where = {(Path(r["source"]).name, r["row"]): r["reason"] for r in quarantined}
    assert "expect_column_values_to_be_in_set(device)" in where[("part-ffffffffffffffff.parquet", 1)]
    assert "expect_compound_columns_to_be_unique" in where[("part-ffffffffffffffff.parquet", 2)]
    assert "expect_compound_columns_to_be_unique" in where[(first.name, 1)]
    assert len(list(date_batches(lake, 1))) == 3 and len(list(date_batches(lake, 10_000))) == 1


def test_an_empty_lake_fails_the_lake_gate_on_its_row_count(params, tmp_path):
    from ctxtag.platform.gates import lake_gate

    (tmp_path / "lake").mkdir()
    params = dataclasses.replace(params, paths=dataclasses.replace(params.paths, lake=tmp_path / "lake"))
    with pytest.raises(GateFailed, match="expect_table_row_count_to_be_between"):
        lake_gate(params, NOW)
