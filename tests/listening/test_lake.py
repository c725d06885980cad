import json
from pathlib import Path

import pandas as pd
import pytest

from ctxtag.common.quarantine import write_quarantine
from ctxtag.config import LogsConfig
from ctxtag.listening.lake import ingest, read_lake
from tests.conftest import CONTEXTS

NOW = pd.Timestamp("2026-03-01T00:00:00Z")
HEADER = "user_id,track_id,timestamp,device,network,location,age,gender,context\n"


def _ingest(paths, lake, **kw):
    return ingest(paths, lake, LogsConfig(), CONTEXTS, now=NOW, **kw)


def test_bad_rows_quarantined_with_row_and_reason_valid_rows_go_on(tmp_path):
    rows = [
        "u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,home,30,f,workout",      # 2 ok
        ",t1,2026-01-05T09:00:00+01:00,phone,wifi,,,,",                        # 3 missing user
        "u1,t2,2026-01-05 09:00:00,phone,wifi,,,,",                            # 4 no time zone
        "u1,t2,yesterday+01:00,phone,wifi,,,,",                                # 5 unparseable
        "u1,t2,2026-06-01T09:00:00Z,phone,wifi,,,,",                           # 6 future
        "u1,t2,2026-01-05T10:00:00Z,toaster,wifi,,,,",                         # 7 device
        "u1,t2,2026-01-05T10:00:00Z,phone,5g,,,,",                             # 8 network
        "u1,t2,2026-01-05T10:00:00Z,phone,wifi,,,,dinner",                     # 9 context
        "u1,t2,2026-01-05T10:00:00Z,phone,wifi,,300,,",                        # 10 age
        "u1,t1,2026-01-05T08:00:00Z,CAR,wifi,,,,",                             # 11 same instant as row 2
        "u2,t9,2026-01-05T10:00:00Z,Phone,Cellular,,,,",                       # 12 unknown track
        "u2,t2,2026-01-06T10:00:00-05:00,car,cellular,car,,x,car",             # 13 ok
        "u3,t2,2026-01-05T10:00:00+15:00,phone,wifi,,,,",                      # 14 no such time zone
        f"{'u' * 65},t2,2026-01-05T10:00:00Z,phone,wifi,,,,",                  # 15 user_id too long
    ]
    path = tmp_path / "drop.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    before = path.read_bytes()
    result = _ingest([path], tmp_path / "lake", known_tracks={"t1", "t2"})
    got = {(r.row, r.reason.split(" (")[0].split(":")[0]) for r in result.rejections}
    assert got == {
        (3, "missing user_id"), (4, "timestamp has no time zone offset"), (5, "unparseable timestamp"),
        (6, "timestamp in the future"), (7, "unknown device"), (8, "unknown network"),
        (9, "unknown context label"), (10, "age not a number in [5, 110]"), (11, "duplicate event"),
        (12, "unknown track_id"), (14, "UTC offset out of range"), (15, "user_id longer than 64 characters"),
    }
    assert all(r.source == str(path) for r in result.rejections)
    assert result.stats["rows_valid"] == 2 and result.stats["rows_quarantined"] == 12
    lake = read_lake(tmp_path / "lake")
    assert lake[["user_id", "track_id"]].values.tolist() == [["u1", "t1"], ["u2", "t2"]]
    assert lake["device"].tolist() == ["phone", "car"]                   # case folded
    assert path.read_bytes() == before


def test_partitions_by_utc_date_and_keeps_the_local_offset(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "u1,t1,2026-01-05T00:30:00+02:00,phone,wifi,,,,\n", encoding="utf-8")
    _ingest([path], tmp_path / "lake")
    parts = list((tmp_path / "lake").glob("date=*/part-*.parquet"))
    assert [p.parent.name for p in parts] == ["date=2026-01-04"]
    row = read_lake(tmp_path / "lake").iloc[0]
    assert row["event_timestamp"] == pd.Timestamp("2026-01-04T22:30:00Z")
    assert row["utc_offset_min"] == 120


def test_reingest_is_a_no_op_and_late_events_never_rewrite_a_partition(tmp_path):
    lake = tmp_path / "lake"
    first = tmp_path / "a.csv"
    first.write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\nu2,t1,2026-01-05T09:00:00Z,tv,wifi,,,,\n")
    assert _ingest([first], lake).stats["events_written"] == 2
    files = {p: p.read_bytes() for p in lake.rglob("*.parquet")}
    again = _ingest([first], lake, incremental=False).stats      # read again: every event known
    assert (again["events_written"], again["events_already_in_lake"]) == (0, 2)
    # a late, out-of-order drop for the same day: a new part file, the old one untouched
    late = tmp_path / "b.parquet"
    pd.DataFrame({"user_id": ["u3", "u1"], "track_id": ["t2", "t1"],
                  "timestamp": ["2026-01-05T07:00:00Z", "2026-01-05T10:00:00Z"],
                  "device": ["phone", "phone"], "network": ["wifi", "wifi"]}).to_parquet(late)
    stats = _ingest([late], lake).stats
    assert (stats["events_written"], stats["events_already_in_lake"]) == (1, 1)
    assert all(p.read_bytes() == b for p, b in files.items())
    assert len(list(lake.rglob("*.parquet"))) == 2
    assert read_lake(lake)["user_id"].tolist() == ["u3", "u2", "u1"]       # time order across parts


def test_a_file_without_required_columns_is_refused_and_the_others_go_on(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("user_id,track_id,timestamp\nu,t,2026-01-05T10:00:00Z\n")
    good = tmp_path / "y.csv"
    good.write_text(HEADER + "u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,,,,\n")
    result = _ingest([bad, good], tmp_path / "lake")
    assert result.stats["files_refused"] == {
        str(bad): "file refused: missing required column(s) ['device', 'network']; found ['user_id', 'track_id', 'timestamp']"}
    assert [(r.source, r.row) for r in result.rejections] == [(str(bad), 0)]
    assert result.stats["events_written"] == 1


def test_malformed_csv_rows_gzip_drops_and_corrupt_parquet_cost_only_themselves(tmp_path):
    import gzip

    drop = tmp_path / "date=2026-01-05"
    drop.mkdir()
    (drop / "a.csv").write_text(HEADER + "u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,,,,\n"
                                "u1,t2,2026-01-05T09:01:00+01:00,phone,wifi,,,,,one-too-many\n"
                                'u1,t3,2026-01-05T09:02:00+01:00,phone,wifi,"Paris,\nFR",,,\n'
                                "u1,t4,2026-01-05T09:03:00+01:00,phone\n"
                                "u1,t5,2026-01-05T09:04:00+01:00,phone,wifi,,,,\n")
    (drop / "b.csv.gz").write_bytes(gzip.compress(
        ("\ufeff" + HEADER + "u2,t1,2026-01-05T10:00:00Z,car,cellular,,,,\n").replace("\n", "\r\n").encode()))
    (drop / "c.parquet").write_bytes(b"PAR1 truncated")
    typed = pd.DataFrame({"user_id": ["u3", "u3"], "track_id": ["t1", "t2"], "device": ["phone"] * 2,
                          "network": ["wifi"] * 2, "extra": [1, 2],
                          "timestamp": pd.to_datetime(["2026-01-05T09:00:00+01:00"] * 2, utc=True)
                          .tz_convert("Europe/Paris")})
    typed.to_parquet(drop / "d.parquet")
    typed.assign(timestamp=[1767600000, 1767600001], user_id="u4").to_parquet(drop / "e.parquet")
    result = _ingest([drop], tmp_path / "lake")
    by_row = {(r.source.rsplit("/", 1)[-1], r.row): r.reason for r in result.rejections}
    assert by_row == {
        ("a.csv", 3): "malformed CSV row: 10 fields, the header has 9",
        ("a.csv", 6): "malformed CSV row: 4 fields, the header has 9",
        ("c.parquet", 0): by_row[("c.parquet", 0)],
        ("e.parquet", 1): "timestamp has no time zone offset (need ISO 8601 like 2026-01-05T08:00:00+01:00)",
        ("e.parquet", 2): "timestamp has no time zone offset (need ISO 8601 like 2026-01-05T08:00:00+01:00)",
    }
    assert by_row[("c.parquet", 0)].startswith("file refused: ArrowInvalid")
    lake = read_lake(tmp_path / "lake")
    assert sorted(zip(lake["user_id"], lake["track_id"], strict=True)) == [
        ("u1", "t1"), ("u1", "t3"), ("u1", "t5"), ("u2", "t1"), ("u3", "t1"), ("u3", "t2")]
    assert lake.set_index("track_id").loc["t3", "location"] == "Paris,\nFR"
    assert set(lake.query("user_id == 'u3'")["utc_offset_min"]) == {60}      # Paris in January


@pytest.mark.parametrize("content", [None, b"", HEADER.encode()])
def test_an_empty_drop_folder_or_file_ingests_nothing_without_error(tmp_path, content):
    drop = tmp_path / "drop"
    drop.mkdir()
    if content is not None:
        (drop / "x.csv").write_bytes(content)
    result = _ingest([drop], tmp_path / "lake")
    assert result.stats["rows_read"] == 0 and result.stats["events_written"] == 0
    assert result.rejections == []


def test_non_utf8_row_is_quarantined(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(HEADER.encode() + b"u\xe9,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\nu2,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\n")
    result = _ingest([path], tmp_path / "lake")
    assert [(r.row, r.reason.split(":")[0]) for r in result.rejections] == [(2, "not valid UTF-8")]
    assert result.stats["rows_valid"] == 1
    out = tmp_path / "q.jsonl"
    write_quarantine(result.rejections, out)
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "u\\xe9" in record["raw"]                                  # the bad byte is kept, readably


def test_feedback_is_optional_case_folded_and_unknown_values_are_quarantined(tmp_path):
    path = tmp_path / "fb.csv"
    path.write_text(HEADER.strip() + ",feedback\n"
                    "u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,,,,,LIKE\n"
                    "u1,t2,2026-01-05T09:01:00+01:00,phone,wifi,,,,,skip\n"
                    "u1,t3,2026-01-05T09:02:00+01:00,phone,wifi,,,,,\n"
                    "u1,t4,2026-01-05T09:03:00+01:00,phone,wifi,,,,,meh\n", encoding="utf-8")
    result = _ingest([path], tmp_path / "lake")
    assert [(r.row, r.reason.split(" (")[0]) for r in result.rejections] == [(5, "unknown feedback")]
    lake = read_lake(tmp_path / "lake").sort_values("track_id")
    assert lake["feedback"].tolist()[:2] == ["like", "skip"] and pd.isna(lake["feedback"].iloc[2])


INGESTER = """
import sys
from pathlib import Path
import pandas as pd
from ctxtag.config import LogsConfig
from ctxtag.listening.lake import ingest
from tests.conftest import CONTEXTS
ingest([sys.argv[1]], Path(sys.argv[2]), LogsConfig(), CONTEXTS, now=pd.Timestamp("2026-03-01T00:00:00Z"))
"""


@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_kill_9_mid_ingest_leaves_whole_parts_and_a_rerun_converges(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    n, days = 120_000, 50
    stamps = pd.Timestamp("2026-01-01T00:00:00Z") + pd.to_timedelta(pd.RangeIndex(n) * (days * 86400 // n), unit="s")
    drop = tmp_path / "drop.csv"
    pd.DataFrame({"user_id": [f"u{i % 997}" for i in range(n)], "track_id": [f"t{i % 89}" for i in range(n)],
                  "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%S+01:00"), "device": "phone",
                  "network": "wifi"}).to_csv(drop, index=False)
    lake = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-c", INGESTER, str(drop), str(lake)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(lake.glob("date=*/part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL                    # killed mid-ingest
    finally:
        if proc.poll() is None:
            proc.kill()
    parts = list(lake.glob("date=*/part-*.parquet"))
    assert 1 <= len(parts) < days
    assert sum(len(pd.read_parquet(p)) for p in parts) < n                # whole parts only, some missing

    _ingest([drop], lake)                                                   # the rerun
    clean = tmp_path / "clean"
    _ingest([drop], clean)
    cols = ["user_id", "track_id", "event_timestamp"]
    assert read_lake(lake)[cols].sort_values(cols).reset_index(drop=True).equals(
        read_lake(clean)[cols].sort_values(cols).reset_index(drop=True))
    assert len(read_lake(lake)) == n                                        # every event once
    assert not [p for p in lake.rglob(".*") if p.is_file()]                # no temp file left


# --- property: corrupt random rows of a valid drop in random ways --------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# corruption -> (how it changes one CSV row's fields or text, what its reason must name)
CSV_CORRUPTIONS = {
    "extra field": (lambda f: f + ["surplus"], "fields, the header has"),
    "missing fields": (lambda f: f[:3], "fields, the header has"),
    "not UTF-8": (lambda f: [b"u\xe9\xff".decode("utf-8", "surrogateescape"), *f[1:]], "not valid UTF-8"),
    "unknown device": (lambda f: [*f[:3], "toaster", *f[4:]], "unknown device"),
    "no offset": (lambda f: [f[0], f[1], f[2][:19], *f[3:]], "no time zone offset"),
    "garbage timestamp": (lambda f: [f[0], f[1], "yesterday+01:00", *f[3:]], "unparseable timestamp"),
    "year 3000": (lambda f: [f[0], f[1], "3000-01-05T09:00:00+01:00", *f[3:]], "timestamp"),
    "missing user": (lambda f: ["", *f[1:]], "missing user_id"),
    "huge field": (lambda f: [*f[:5], "x" * 200_000, *f[6:]], "field longer than 131072 characters: location"),
    "bad age": (lambda f: [*f[:6], "-3", *f[7:]], "age not a number"),
}


def _csv_line(fields):
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue().encode("utf-8", "surrogateescape")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 25), data=st.data(), gz=st.booleans(), crlf=st.booleans(), bom=st.booleans(),
       multiline=st.booleans())
def test_property_corrupt_rows_are_quarantined_and_every_valid_row_kept_once(tmp_path_factory, n, data, gz, crlf, bom,
                                                                            multiline):
    import gzip

    # quoted newlines send the file to the exact reader, one-line records to Arrow's: both are drawn
    rows = [[f"u{i % 4}", f"t{i}", f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00+01:00", "phone", "wifi",
             "Paris,\nFR" if multiline and i % 5 == 0 else "Paris, FR", str(18 + i % 50), "", ""] for i in range(n)]
    bad = data.draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(sorted(CSV_CORRUPTIONS))))
    body, expected, spans, line = b"", {}, set(), 2
    for i, fields in enumerate(rows):
        text = _csv_line(CSV_CORRUPTIONS[bad[i]][0](fields) if i in bad else fields)
        if i in bad:
            expected[line] = CSV_CORRUPTIONS[bad[i]][1]
            spans |= set(range(line, line + text.count(b"\n")))
        body += text
        line += text.count(b"\n")
    content = (b"\xef\xbb\xbf" if bom else b"") + HEADER.encode() + body
    if crlf:
        content = content.replace(b"\n", b"\r\n")
    folder = tmp_path_factory.mktemp("drop")
    path = folder / ("drop.csv.gz" if gz else "drop.csv")
    path.write_bytes(gzip.compress(content) if gz else content)
    before = path.read_bytes()

    result = _ingest([folder], folder / "lake")                          # no exception escapes

    got = {r.row: r.reason for r in result.rejections}
    # a rejected record over several lines costs its first line, and its other lines are read
    # again (so a stray quote never swallows the rows after it): they may be rejected in turn
    assert set(expected) <= set(got) <= spans
    for row, must_name in expected.items():
        assert must_name in got[row], (row, got[row])
    kept = read_lake(folder / "lake")
    assert sorted(kept["track_id"]) == sorted(f"t{i}" for i in range(n) if i not in bad)   # each once
    assert path.read_bytes() == before                                   # the raw drop untouched


def test_parquet_cells_of_the_wrong_kind_are_quarantined_not_turned_into_text(tmp_path):
    good = {"track_id": ["t1", "t2"], "timestamp": ["2026-01-05T09:00:00+01:00"] * 2,
            "device": ["phone"] * 2, "network": ["wifi"] * 2}
    pd.DataFrame({"user_id": [[1], [2]], **good}).to_parquet(tmp_path / "lists.parquet")
    pd.DataFrame({"user_id": [b"\xe9x", b"u"], **good}).to_parquet(tmp_path / "bytes.parquet")
    pd.DataFrame({"user_id": ["u1", "NA"], **good}).to_parquet(tmp_path / "good.parquet")
    result = _ingest([tmp_path], tmp_path / "lake")
    reasons = sorted({r.reason for r in result.rejections})
    assert reasons == ["user_id must be text or a number, not bytes", "user_id must be text or a number, not list"]
    assert len(result.rejections) == 4
    assert sorted(read_lake(tmp_path / "lake")["user_id"]) == ["NA", "u1"]


def test_where_the_flushes_fall_changes_no_outcome(tmp_path, monkeypatch):
    """A large run writes its dates every FLUSH_ROWS staged rows; the quarantine, the lake's
    events and the counts are those of one whole-run batch: a copy of an event an earlier flush
    wrote, or found already in the lake, is still a duplicate."""
    import shutil

    import ctxtag.listening.lake as lake_module

    (tmp_path / "old.csv").write_text(HEADER + "u9,t1,2026-01-05T11:00:00Z,phone,wifi,,,,\n"
                                      "u9,t2,2026-01-06T11:00:00Z,phone,wifi,,,,\n")
    drops = {   # copies within a drop, across drops (and dates), of events the lake held before
        "a.csv": ["u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,", "u1,t1,2026-01-05T10:00:00Z,car,wifi,,,,",
                  "u2,t1,2026-01-05T23:59:59-01:00,tv,wifi,,,,", "u9,t1,2026-01-05T11:00:00Z,tv,wifi,,,,",
                  "u3,t9,2026-01-05T10:00:00Z,phone,wifi,,,,"],
        "b.csv": ["u1,t1,2026-01-05T10:00:00Z,tv,wifi,,,,", "u4,t2,2026-01-06T09:00:00Z,phone,wifi,,,,",
                  "u9,t1,2026-01-05T11:00:00Z,phone,wifi,,,,", "u5,t2,2026-01-05T08:00:00Z,phone,wifi,,,,"],
        "c.csv": ["u4,t2,2026-01-06T09:00:00Z,tv,wifi,,,,", "u2,t1,2026-01-06T00:59:59Z,phone,wifi,,,,",
                  "u9,t2,2026-01-06T11:00:00Z,phone,wifi,,,,", "u6,t1,2026-01-06T12:00:00Z,phone,wifi,,,,"],
    }
    for name, rows in drops.items():
        (tmp_path / name).write_text(HEADER + "\n".join(rows) + "\n")
    _ingest([tmp_path / "old.csv"], tmp_path / "before", known_tracks={"t1", "t2"})
    results = {}
    # one batch; a flush after every drop (BATCH_ROWS 1: a batch a drop), after every second or
    # third drop (4, 8 rows): flushes that fall inside dates
    default = lake_module.FLUSH_ROWS, lake_module.BATCH_ROWS
    for flush in (default[0], 1, 4, 8):
        monkeypatch.setattr(lake_module, "BATCH_ROWS", default[1] if flush == default[0] else 1)
        monkeypatch.setattr(lake_module, "FLUSH_ROWS", flush)
        lake = tmp_path / f"lake-{flush}"
        shutil.copytree(tmp_path / "before", lake)
        got = _ingest([tmp_path / n for n in drops], lake, known_tracks={"t1", "t2"})
        stats = {k: v for k, v in got.stats.items() if k != "part_files_written"}
        results[flush] = ([(Path(r.source).name, r.row, r.reason.split(":")[0]) for r in got.rejections], stats,
                          read_lake(lake).sort_values(["event_timestamp", "user_id"]).reset_index(drop=True),
                          got.stats["part_files_written"])
    (q1, s1, l1, p1), (q2, s2, l2, p2), *others = results.values()
    for q, s, lake_events, _ in [(q2, s2, l2, p2), *others]:
        assert q == q1 and s == s1 and lake_events.equals(l1)
    assert [r for r in q1 if r[2].startswith("duplicate")] == [
        ("a.csv", 3, "duplicate event"), ("b.csv", 2, "duplicate event"), ("b.csv", 4, "duplicate event"),
        ("c.csv", 2, "duplicate event"), ("c.csv", 3, "duplicate event")]     # c3: a4's instant, another offset
    assert (s1["events_written"], s1["events_already_in_lake"], s1["rows_valid"]) == (5, 2, 7)
    assert len(l1) == 7 and (p1, p2) == (2, 5)      # the same events, in more parts: each flush its own


@pytest.mark.slow                   # starts Spark: the full suite, not the fast lane
def test_spark_ingests_exactly_as_duckdb(tmp_path, spark_engine, monkeypatch):
    """The embedded engine and Spark run one definition: the same quarantine, the same lake.
    Spark flushes after every drop (its copies of earlier flushes' events found in their parts)."""
    from ctxtag.config import DataPlaneConfig

    rows = ["u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,home,30,f,workout",
            "u1,t1,2026-01-05T08:00:00Z,CAR,wifi,,,,",                    # the same instant: duplicate
            "u2,t2,2026-01-05T23:30:00-05:00,Phone,Cellular,,41.5,x,car",  # the next UTC date
            "u3,t9,2026-01-06T10:00:00Z,phone,wifi,,,,",                   # unknown track
            "u4,t1,2026-02-30T10:00:00Z,phone,wifi,,,,",                   # no such day
            "u5,t2,2026-01-06T10:00:00+14:30,phone,wifi,,,,",              # no such time zone
            "u6,t2,2026-01-06 10:00:00.123456789+0100,tv,offline,,200,,",  # age out of range
            "u7,t2,2026-01-06 10:00:00.123456789+0100,tv,offline,,20,,"]
    (tmp_path / "a.csv").write_text(HEADER + "\n".join(rows[:4]) + "\n")
    (tmp_path / "b.csv").write_text(HEADER + "\n".join(rows[4:] + rows[:1]) + "\n")    # a duplicate across files
    results = {}
    for name in ("duckdb", "spark"):
        if name == "spark":     # the session the tests share, rather than a second JVM
            import ctxtag.listening.lake as lake_module

            real = lake_module.open_engine
            lake_module.open_engine = lambda *a, **k: spark_engine
            monkeypatch.setattr(lake_module, "BATCH_ROWS", 1)
            monkeypatch.setattr(lake_module, "FLUSH_ROWS", 1)
            try:
                got = _ingest([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / name, known_tracks={"t1", "t2"})
            finally:
                lake_module.open_engine = real
        else:
            got = _ingest([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / name, known_tracks={"t1", "t2"},
                          data_plane=DataPlaneConfig(engine="duckdb"))
        results[name] = (sorted((r.source, r.row, r.reason) for r in got.rejections), read_lake(tmp_path / name),
                         sorted(p.relative_to(tmp_path / name).parent.name for p in (tmp_path / name).rglob("*.parquet")))
    (duck_q, duck_lake, duck_dates), (spark_q, spark_lake, spark_dates) = results["duckdb"], results["spark"]
    assert duck_q == spark_q and len(duck_q) == 6
    assert [r[2].split(":")[0].split(" (")[0] for r in duck_q].count("duplicate event") == 2
    assert sorted(set(spark_dates)) == duck_dates == ["date=2026-01-05", "date=2026-01-06"]
    assert duck_lake.equals(spark_lake) and len(duck_lake) == 3
    assert duck_lake["event_timestamp"].iloc[-1] == pd.Timestamp("2026-01-06T09:00:00.123456Z")


@pytest.mark.slow                   # starts Spark: the full suite, not the fast lane
def test_spark_submit_runs_the_ingest_stage_on_a_cluster_master(tmp_path):
    """What the DAG's SparkSubmitOperator runs: the real spark-submit (master local[1] here)."""
    import shutil
    import subprocess
    import sys

    import pyspark

    from tests.conftest import ROOT, tool_env

    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (java not on PATH)")
    drops = tmp_path / "data/raw/listening_logs"
    drops.mkdir(parents=True)
    (drops / "d.csv").write_text(HEADER + "u1,t1,2026-01-05T09:00:00+01:00,phone,wifi,,,,\n"
                                 "u2,t1,2026-01-05T09:00:00+01:00,toaster,wifi,,,,\n")
    submit = Path(sys.executable).parent / "spark-submit"
    proc = subprocess.run([str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                           str(ROOT / "ctxtag/listening/spark_main.py"), "ingest-logs", "--project", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**tool_env(), "PYTHONPATH": str(ROOT), "SPARK_HOME": str(Path(pyspark.__file__).parent),
                               "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "reports/ingest_logs.json").read_text())
    assert (report["engine"], report["rows_valid"], report["rows_quarantined"]) == ("spark", 1, 1)
    assert read_lake(tmp_path / "data/lake/listening_logs")["user_id"].tolist() == ["u1"]


def test_the_lake_holds_typed_columns(tmp_path):
    """Ages are numbers and offsets integers in the parquet itself, not only after read_lake."""
    import pyarrow.parquet as pq

    path = tmp_path / "d.csv"
    path.write_text(HEADER + "u1,t1,2026-01-05T09:00:00+05:30,phone,wifi,,30,,\n")
    _ingest([path], tmp_path / "lake")
    (part,) = (tmp_path / "lake").rglob("part-*.parquet")
    schema = pq.read_schema(part)
    assert str(schema.field("age").type) == "double" and str(schema.field("utc_offset_min").type) == "int32"
    assert str(schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    assert pq.read_table(part).column("utc_offset_min").to_pylist() == [330]


def test_a_drop_already_ingested_is_skipped_unless_its_bytes_or_the_rules_change(tmp_path):
    """The lake's manifest: a drop taken in is not read again (the daily ingest reads the day's
    drop, not the history); touched, it is hashed and still skipped; rewritten, or under another
    catalogue or rule setting, it is read again; the lake never holds an event twice."""
    import os

    lake, drop = tmp_path / "lake", tmp_path / "a.csv"
    drop.write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\nu2,t1,2026-01-05T09:00:00Z,tv,wifi,,,,\n")
    first = _ingest([drop], lake)
    assert (first.stats["drops_read"], first.stats["events_written"]) == (1, 2) and first.read == [str(drop)]
    again = _ingest([drop], lake)
    assert again.skipped == [str(drop)] and again.stats["rows_read"] == 0 and again.stats["drops_already_ingested"] == 1
    held = {f: f.read_bytes() for f in lake.rglob("*") if f.is_file()}
    os.utime(drop, ns=(1, 1))                                  # a checkout: same bytes, new mtime
    assert _ingest([drop], lake).skipped == [str(drop)]
    moved = tmp_path / "b.csv"
    drop.rename(moved)                                         # same bytes under another name
    assert _ingest([moved], lake).skipped == [str(moved)]
    # the lake (a DVC output others depend on) is the same bytes: it records contents, not files
    assert {f: f.read_bytes() for f in lake.rglob("*") if f.is_file()} == held
    moved.write_text(moved.read_text() + "u3,t1,2026-01-05T11:00:00Z,tv,wifi,,,,\n")
    grown = _ingest([moved], lake).stats
    assert (grown["drops_read"], grown["events_written"], grown["events_already_in_lake"]) == (1, 1, 2)
    other_catalogue = _ingest([moved], lake, known_tracks={"t1", "t9"}).stats
    assert (other_catalogue["drops_read"], other_catalogue["events_written"]) == (1, 0)
    assert ingest([moved], lake, LogsConfig(max_age=99), CONTEXTS, now=NOW).stats["drops_read"] == 1
    assert len(read_lake(lake)) == 3


def test_drops_the_reader_hashes_are_skipped_in_order_and_then_cached(tmp_path, monkeypatch):
    """Without the stat cache each drop is hashed on the reader's threads: those the lake took in
    are skipped (listed in the drops' order, once however often named), the others read; the
    cache rebuilt, a rerun hashes nothing."""
    from ctxtag.listening import lake as lake_module

    lake = tmp_path / "lake"
    a, b, c = (tmp_path / f"{name}.csv" for name in "abc")
    a.write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\n")
    c.write_text(HEADER + "u3,t1,2026-01-07T10:00:00Z,phone,wifi,,,,\n")
    _ingest([a, c], lake)
    lake_module._stat_file(lake).unlink()
    b.write_text(HEADER + "u2,t1,2026-01-06T10:00:00Z,phone,wifi,,,,\n")
    got = _ingest([a, b, a, c], lake)                          # a drop named twice is one drop
    assert got.skipped == [str(a), str(c)] and got.read == [str(b)]
    assert (got.stats["drops_read"], got.stats["drops_already_ingested"], got.stats["rows_read"],
            got.stats["events_written"]) == (1, 2, 1, 1)

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(lake_module, "file_sha256", no_hashing)
    again = _ingest([a, b, c, c], lake)
    assert again.skipped == [str(a), str(b), str(c)] and again.read == []
    assert sorted(read_lake(lake)["user_id"]) == ["u1", "u2", "u3"]


def test_a_drop_that_cannot_be_hashed_is_refused_and_the_others_go_on(tmp_path, monkeypatch):
    """Hashing reads the file: where that fails (here an OSError, as a drop whose permissions
    changed gives, or a drop removed since it was listed), the drop is refused with the reason,
    not recorded as taken in, and the rest of the batch is ingested."""
    from ctxtag.listening import lake as lake_module

    lake, a, b = tmp_path / "lake", tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\n")
    b.write_text(HEADER + "u2,t1,2026-01-06T10:00:00Z,phone,wifi,,,,\n")
    real = lake_module.file_sha256

    def denied(path):
        if Path(path).name == "a.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(lake_module, "file_sha256", denied)
    got = _ingest([a, b], lake)
    assert [(r.source, r.row) for r in got.rejections] == [(str(a), 0)]
    assert "Permission denied" in got.rejections[0].reason and got.stats["events_written"] == 1
    monkeypatch.setattr(lake_module, "file_sha256", real)
    again = _ingest([a, b], lake)
    assert again.read == [str(a)] and again.skipped == [str(b)] and again.stats["events_written"] == 1
    # a drop gone between being listed and being read: refused too, the others skipped as before
    gone = tmp_path / "gone.csv"
    monkeypatch.setattr(lake_module, "collect_files", lambda *_: [gone, a, b])
    last = _ingest([a, b], lake)
    assert [(r.source, r.row) for r in last.rejections] == [(str(gone), 0)] and "No such file" in last.rejections[0].reason
    assert last.skipped == [str(a), str(b)]


def test_a_drop_with_future_rows_is_read_again_when_they_may_have_become_valid(tmp_path):
    lake, drop = tmp_path / "lake", tmp_path / "a.csv"
    drop.write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\nu1,t1,2026-03-05T10:00:00Z,phone,wifi,,,,\n")
    early = _ingest([drop], lake)
    assert early.stats["events_written"] == 1 and [r.row for r in early.rejections] == [3]
    later = ingest([drop], lake, LogsConfig(), CONTEXTS, now=pd.Timestamp("2026-04-01T00:00:00Z"))
    assert later.read == [str(drop)] and later.stats["events_written"] == 1 and not later.rejections
    assert ingest([drop], lake, LogsConfig(), CONTEXTS, now=pd.Timestamp("2026-04-02T00:00:00Z")).skipped == [str(drop)]


def test_the_stage_keeps_the_rejections_of_skipped_drops_and_a_rerun_changes_nothing(tmp_path, monkeypatch):
    """`ctxtag ingest-logs` twice with a new drop between: the quarantine holds both drops'
    rejections (the first's kept from the persisted output); a third run with nothing new leaves
    the quarantine and the lake byte for byte."""
    import dataclasses

    from ctxtag.config import Params
    from ctxtag.stages import ingest_logs

    monkeypatch.chdir(tmp_path)
    params = Params()
    drops = Path(params.paths.listening_logs)
    drops.mkdir(parents=True)
    Path(params.paths.tracks).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"track_id": ["t1", "t2"]}).to_csv(params.paths.tracks, index=False)
    (drops / "a.csv").write_text(HEADER + "u1,t1,2026-01-05T10:00:00Z,phone,wifi,,,,\nu1,t1,2026-01-05,phone,wifi,,,,\n")
    params = dataclasses.replace(params, data_plane=dataclasses.replace(params.data_plane, engine="duckdb"))
    ingest_logs.run(params, now=NOW)
    (drops / "b.csv").write_text(HEADER + "u2,t2,2026-01-06T10:00:00Z,tv,wifi,,,,\nu2,t2,2026-01-06T10:00:00Z,toaster,wifi,,,,\n")
    stats = ingest_logs.run(params, now=NOW)
    assert (stats["drops_read"], stats["drops_already_ingested"]) == (1, 1)
    quarantine = Path(params.paths.quarantined("listening_logs"))
    sources = [Path(json.loads(line)["source"]).name for line in quarantine.read_text().splitlines()]
    assert sources == ["a.csv", "b.csv"]
    before = {f: f.read_bytes() for f in [quarantine, *Path(params.paths.lake).rglob("*")] if f.is_file()}
    assert ingest_logs.run(params, now=NOW)["rows_read"] == 0
    assert {f: f.read_bytes() for f in before} == before


def test_the_catalogue_read_by_arrow_is_the_set_pandas_read(tmp_path):
    """The stage reads the catalogue's ids with Arrow; they must be what ``known_track_ids`` gives
    (pandas' NA spellings are no ids, repeats count once), so the ingestion key is unchanged."""
    from ctxtag.common.io import catalogue_ids, known_track_ids
    from ctxtag.listening.lake import ingestion_key, sorted_catalogue

    path = tmp_path / "tracks.csv"
    path.write_text('track_id,artist_id\nt2,a\nt1,b\nNA,c\nt2,d\n"t,3",e\nnull,f\n007,g\n')
    ids = catalogue_ids(path)
    known = {t for t in known_track_ids(path) if isinstance(t, str)}      # pandas' NA is a float NaN
    assert set(ids.to_pylist()) == known == {"t1", "t2", "t,3", "007"}
    assert sorted_catalogue(ids).equals(sorted_catalogue(known))
    assert ingestion_key(LogsConfig(), CONTEXTS, sorted_catalogue(ids)) == \
        ingestion_key(LogsConfig(), CONTEXTS, sorted_catalogue(known))
    assert catalogue_ids(tmp_path / "none.csv") is None
    odd = tmp_path / "odd.csv"          # more fields than the header: Arrow refuses, pandas reads (an NA too)
    odd.write_text("track_id,title\nt1,a,extra\nt2,NA,more\nt3,b,x\n")
    assert set(catalogue_ids(odd).to_pylist()) == {t for t in known_track_ids(odd) if isinstance(t, str)} == {"a", "b"}
