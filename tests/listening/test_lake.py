import json

import pandas as pd
import pytest

from ctxtag.common.quarantine import InputError, write_quarantine
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
    again = _ingest([first], lake).stats
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


def test_missing_required_column_names_the_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,track_id,timestamp\nu,t,2026-01-05T10:00:00Z\n")
    with pytest.raises(InputError, match=r"x\.csv: missing required column\(s\) \['device', 'network'\]"):
        _ingest([path], tmp_path / "lake")


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
