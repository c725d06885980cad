"""One rule table, three consumers: ingestion, the GX logs gate and the API request models agree."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ctxtag.config import LogsConfig, Params
from ctxtag.listening import rules
from ctxtag.listening.lake import checked_rows, validate
from ctxtag.platform.gates import logs_suite, run_gate
from ctxtag.serving.api import request_models
from tests.conftest import CONTEXTS

NOW = pd.Timestamp("2026-03-01T00:00:00Z")
GOOD = {"user_id": "u1", "track_id": "t1", "timestamp": "2026-01-05T09:00:00+01:00", "device": "phone",
        "network": "wifi", "location": "home", "age": "30", "gender": "f", "context": "gym", "feedback": "like"}
LAKE = [*rules.KEY, "utc_offset_min", "device", "network", "location", "age", "gender", "context", "feedback"]

# (field, bad value, the reason's head, the lake column GX blames, the API model holding the field)
CASES = [
    ("user_id", None, "missing user_id", "user_id", "situation"),
    ("user_id", "u" * 65, "user_id longer than 64 characters", "user_id", "recommend"),
    ("device", None, "missing device", "device", "situation"),
    ("device", "toaster", "unknown device", "device", "situation"),
    ("network", "5g", "unknown network", "network", "situation"),
    ("timestamp", "2026-01-05 09:00:00", "timestamp has no time zone offset", "event_timestamp", "situation"),
    ("timestamp", "yesterday+01:00", "unparseable timestamp", "event_timestamp", "situation"),
    ("timestamp", "2026-01-05T09:00:00+15:00", "UTC offset out of range", "utc_offset_min", "situation"),
    ("timestamp", "2026-01-05T09:00:00-13:00", "UTC offset out of range", "utc_offset_min", "situation"),
    ("timestamp", "2026-03-01T00:10:00Z", "timestamp in the future", "event_epoch_s", "situation"),
    ("age", "300", "age not a number in [5, 110]", "age", "situation"),
    ("gender", "q", "unknown gender", "gender", "situation"),
    ("context", "dinner", "unknown context label", "context", "recommend"),
    ("feedback", "meh", "unknown feedback", "feedback", None),          # not a request field
]


def _head(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def _raw(overrides: list[dict]) -> pd.DataFrame:
    raw = pd.DataFrame([{**GOOD, "user_id": f"u{i}", **o} for i, o in enumerate(overrides)], dtype=object)
    return raw.assign(source="drop.csv", row=np.arange(2, len(raw) + 2))


def test_the_table_takes_its_sets_and_bounds_from_logs_config():
    cfg = LogsConfig(devices=("phone",), min_age=18, max_age=99, max_future_s=60)
    table = rules.log_rules(cfg, ("gym",))
    assert rules.find(table, "device", "in_set").allowed == ("phone",)
    assert rules.find(table, "context", "in_set").allowed == ("gym",)
    age = rules.find(table, "age", "between")
    assert (age.low, age.high, age.reason) == (18, 99, "age not a number in [18, 99]")
    assert rules.find(table, "timestamp", "not_future").high == 60
    assert rules.REQUIRED == ("user_id", "track_id", "timestamp", "device", "network")
    assert all(r.reason for r in table)


def test_ingestion_quarantines_each_broken_rule_with_its_reason():
    raw = _raw([{}] + [{field: value} for field, value, *_ in CASES])
    valid, rejections = validate(raw, LogsConfig(), CONTEXTS, NOW)
    assert valid["user_id"].tolist() == ["u0"]
    got = {r.row - 3: _head(r.reason) for r in rejections}               # case index
    assert got == {i: head for i, (_, _, head, *_) in enumerate(CASES)}


def test_the_logs_gate_fails_each_row_the_table_rejects(tmp_path):
    p = Params()
    params = dataclasses.replace(p, paths=dataclasses.replace(p.paths, data_docs=tmp_path / "gx",
                                                              quarantine=tmp_path / "q"),
                                 quality=dataclasses.replace(p.quality, max_bad_share=1.0))
    # the rows as the lake would hold them had ingestion let them through
    lake = checked_rows(_raw([{}] * 3 + [{field: value} for field, value, *_ in CASES]), LogsConfig(), CONTEXTS, NOW)
    lake = lake[LAKE]
    report = run_gate("listening_logs", *logs_suite(lake, params, NOW), params, "lake")
    assert report.bad_rows == len(CASES)
    quarantined = [json.loads(line) for line in (tmp_path / "q/gate_listening_logs.jsonl").read_text().splitlines()]
    got = {r["row"] - 4: r["reason"] for r in quarantined}                # 1-based, after 3 good rows
    for i, (field, value, _, column, _) in enumerate(CASES):
        assert f"({column})" in got[i], (field, value, got[i])


@pytest.mark.parametrize("field, value, head, model", [(f, v, h, m) for f, v, h, _, m in CASES if m])
def test_the_api_answers_422_naming_the_field_with_the_tables_reason(field, value, head, model):
    situation, recommend = request_models(Params(), clock=lambda: NOW)
    body = {k: GOOD[k] for k in ("user_id", "timestamp", "device", "network", "age", "gender")}
    cls, body = (situation, body) if model == "situation" else (recommend, {"user_id": "u1"})
    with pytest.raises(ValidationError) as err:
        cls(**{**body, field: value})
    (error,) = err.value.errors()
    assert error["loc"] == (field,) and head in error["msg"]


def test_the_api_normalises_like_ingestion():
    situation, _ = request_models(Params())
    s = situation(user_id=" u1 ", device=" CAR", network="Cellular", timestamp="2026-01-05T09:00:00+14:00",
                  gender="F")
    assert (s.user_id, s.device, s.network, s.gender) == ("u1", "car", "cellular", "f")
    assert s.timestamp.utcoffset() == pd.Timedelta(hours=14)


def test_over_http_a_bad_field_is_422_before_any_model_is_needed(tmp_path):
    from fastapi.testclient import TestClient

    from ctxtag.serving.api import create_app

    c = TestClient(create_app(Params(), tmp_path))
    body = {k: GOOD[k] for k in ("user_id", "timestamp", "device", "network")}
    r = c.post("/contexts", json={**body, "timestamp": "2026-01-05T09:00:00+15:00"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "timestamp"]
    assert "UTC offset out of range" in r.json()["detail"][0]["msg"]
    assert c.post("/contexts", json=body).status_code == 503                 # valid: on to the (absent) model


VALUES = {
    "user_id": ["u1", " u1 ", "", "   ", None, "u\udce9", "x" * 64, "x" * 65, 7],
    "timestamp": ["2026-01-05T09:00:00+01:00", "2026-01-05T08:00:00Z", " 2026-01-05T08:00:00+0000 ",
                  "2026-01-05 09:00:00", "yesterday+01:00", "2026-01-05T09:00:00+01:75", "2026-01-05T09:00+1400",
                  "2026-01-05T09:00:00+14:01", "2026-01-05T09:00:00-12:00", "2026-01-05T09:00:00-1201",
                  "20260105T090000+01:00", "2026-03-01T00:04:59Z", "2026-03-01T00:05:01Z", None, ""],
    "device": ["phone", " Phone ", "CAR", "toaster", "", None, "ph\udce9ne"],
    "network": ["wifi", "Cellular", "5g", None],
    "age": [30, 30.5, "30", " 40 ", "300", 4, 110, 111, "x", "", None, np.nan, "nan", "1e1"],
    "gender": ["f", "M", "q", None, "", "f\udce9"],
    "context": ["gym", "Sleep", "dinner", None],
    "feedback": ["like", "SKIP", "meh", None],
    "location": ["home", None, "h\udce9"],
}


def test_one_value_gets_the_same_answer_as_a_row_of_a_drop():
    """check_value (the API, one value) and the rule table's SQL (ingestion) are twins."""
    table = rules.log_rules(LogsConfig(), CONTEXTS)
    cases = [(field, v) for field, values in VALUES.items() for v in values]
    raw = pd.DataFrame([{**GOOD, "user_id": f"u{i}", "track_id": f"t{i}", field: v}
                        for i, (field, v) in enumerate(cases)], dtype=object)
    frame = checked_rows(raw.assign(source="drop.csv", row=np.arange(len(raw))), LogsConfig(), CONTEXTS, NOW)["reason"]
    for i, (field, v) in enumerate(cases):
        one = rules.check_value(table, field, v, NOW)[1]
        assert (None if pd.isna(frame.iat[i]) else frame.iat[i]) == one, (field, v)


def _stamp_text():
    from hypothesis import strategies as st

    two = st.integers(0, 99).map(lambda v: f"{v:02d}")
    frac = st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=10).map(lambda f: "." + f))
    seconds = st.one_of(st.just(""), st.tuples(two, frac).map(lambda t: ":" + t[0] + t[1]))
    offset = st.one_of(st.just("Z"), st.just(""), st.tuples(st.sampled_from("+-"), two, st.sampled_from(["", ":"]), two)
                       .map(lambda t: t[0] + t[1] + t[2] + t[3]))
    year = st.one_of(st.integers(0, 9999).map(lambda v: f"{v:04d}"), st.just("2026"))
    return st.tuples(year, two, two, st.sampled_from("T t"), two, two, seconds, offset,
                     st.sampled_from(["", " ", "\t"])).map(
        lambda p: f"{p[8]}{p[0]}-{p[1]}-{p[2]}{p[3]}{p[4]}:{p[5]}{p[6]}{p[7]}{p[8]}")


def test_property_arrow_and_python_read_a_timestamp_alike():
    """rules.prepare (Arrow, every drop) and rules.parse_instant (Python, the API) are twins on any
    text shaped like a timestamp: valid or not, leap days, 24:00, offsets past :59, long fractions."""
    import pyarrow as pa
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_stamp_text(), min_size=1, max_size=40))
    def check(texts):
        got = rules.prepare(pa.table({"timestamp": pa.array(texts, type=pa.string())})).to_pydict()
        for i, text in enumerate(texts):
            instant, offset = rules.parse_instant(rules.strip(text))
            assert got["event_timestamp"][i] == (None if instant is None else instant.to_pydatetime()), text
            if instant is not None:
                assert got["utc_offset_min"][i] == offset, text

    check()


def test_prepare_reads_leap_days_and_refuses_impossible_times():
    import pyarrow as pa

    texts = ["2024-02-29T12:00:00Z", "2026-02-29T12:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T09:00:00.1234567+05:30",
             "2026-01-05 09:00-0130", "2026-01-05T09:00:00+01:60", None]
    got = rules.prepare(pa.table({"timestamp": pa.array(texts, type=pa.string())})).to_pandas()
    assert got["event_timestamp"].iloc[0] == pd.Timestamp("2024-02-29T12:00:00Z")
    assert got["event_timestamp"].iloc[1:3].isna().all()
    assert got["event_timestamp"].iloc[3] == pd.Timestamp("2026-01-05T03:30:00.123456Z")
    assert got["event_timestamp"].iloc[4] == pd.Timestamp("2026-01-05T10:30:00Z") and got["utc_offset_min"].iloc[4] == -90
    assert got["event_timestamp"].iloc[5:].isna().all()


def _near_fixed(rng: np.random.Generator, n: int) -> list[str]:
    """25-character texts at and around YYYY-MM-DDTHH:MM:SS+HH:MM, the shape rules._instants reads
    on its fast path: impossible dates and times, offsets past :59, swapped separators, stray
    bytes, and other shapes of the same length (a fraction and Z, whitespace at either end)."""
    def pick(choices: list[str]) -> str:
        return choices[rng.integers(len(choices))]

    def num(edges: list[int], top: int, width: int = 2) -> str:
        return f"{pick(edges) if rng.random() < 0.7 else rng.integers(top):0{width}d}"

    texts = []
    for _ in range(n):
        date = (f"{num([2026, 2024, 2000, 1900, 2100, 1677, 1678, 2261, 2262, 0, 9999], 10000, 4)}"
                f"-{num([1, 2, 12, 0, 13], 100)}-{num([1, 28, 29, 30, 31, 0, 32], 100)}")
        time_ = f"{num([0, 9, 23, 24], 100)}:{num([0, 59, 60], 100)}:{num([0, 2, 59, 60], 100)}"
        offset = f"{num([0, 5, 12, 14, 15, 99], 100)}:{num([0, 30, 59, 60], 100)}"
        chars = list(f"{date}{pick(['T', ' '])}{time_}{pick(['+', '-'])}{offset}")
        if rng.random() < 0.3:             # a separator or a digit swapped for a near miss
            chars[rng.integers(25)] = pick(["T", "t", " ", "-", "+", ":", "/", ".", "Z", "x", "\t", "0", "9", ",", "é"])
        texts.append("".join(chars))
    leap_days = [f"{y}-02-29T12:00:00+01:00" for y in (1900, 1996, 2000, 2004, 2020, 2024, 2027, 2028, 2100, 2200)]
    odd = ["2026-01-05T00:00:00.1234Z", "2026-01-05T00:00:00.123+01", "2026-01-05 00:00:00+0100 ",
           " 2026-01-05T00:00:00+0100", "2026-01-05T00:00:00+0100\t", "2026-01-05T00:00+01:00:00",
           "2026-02-29T12:00:00+14:60", "2024-02-29T24:00:00-12:00", "2026-01-05T00:00:00\u00a0+01:00"]
    return leap_days + odd + texts


def _same(got, want, texts, what):
    for g, w, name in zip(got, want, ("instant", "offset", "has_offset"), strict=True):
        assert g.type == w.type, (what, name, g.type, w.type)
        bad = [(t, a, b) for t, a, b in zip(texts, g.to_pylist(), w.to_pylist(), strict=True) if a != b]
        assert not bad, (what, name, bad[:5])


def test_the_fast_path_reads_timestamps_as_the_general_reader_does():
    """rules._instants reads texts of the one common shape from a byte grid, the rest with
    regular expressions (rules._instants_general): both give the same answers on every text, and
    the instants parse_instant (the API's reader) gives."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    near = _near_fixed(rng, 20_000)
    sized = [t for t in near if len(t.encode()) == 25]
    fits = rules._fixed_shape(rules._grid(pa.array(sized, type=pa.large_string())))
    assert 0.3 < fits.mean() < 0.95                   # both paths have work to do
    fitting = [t for t, ok in zip(sized, fits, strict=True) if ok]
    others = [t[: rng.integers(25)] for t in near[:3000]] + [t + "0" for t in near[:500]] \
        + ["2026-01-05T00:00:00.123456+05:30", "2026-01-05T00:00:00Z", "2026-01-05T00:00+0100", ""]
    mixed = [None if rng.random() < 0.05 else t for t in near + others]
    rng.shuffle(mixed)
    for what, texts in (("mixed", mixed), ("all 25 bytes", sized), ("all fitting", fitting)):
        for kind in (pa.string(), pa.large_string()):
            arr = pa.array(texts, type=kind)
            _same(rules._instants(arr), rules._instants_general(arr), texts, what)
            sliced = arr.slice(7, len(arr) - 20)
            _same(rules._instants(sliced), rules._instants_general(sliced), texts[7:len(arr) - 13], what + ", sliced")
    # a null whose slot still spans 25 bytes (Arrow allows it) is no text
    data = pa.py_buffer(b"2026-01-05T00:00:00+01:00" * 2)
    valid = pa.array([True, False]).buffers()[1]
    arr = pa.Array.from_buffers(pa.string(), 2, [valid, pa.py_buffer(np.array([0, 25, 50], np.int32).tobytes()), data])
    _same(rules._instants(arr), rules._instants_general(arr), ["2026-01-05T00:00:00+01:00", None], "null slot")
    assert rules._instants(arr)[2].to_pylist() == [True, False]

    sample = near[:19] + [t for t in mixed if t is not None][:3000]
    got = rules._instants(pa.array(sample))
    for text, instant, offset in zip(sample, got[0].to_pylist(), got[1].to_pylist(), strict=True):
        want, want_offset = rules.parse_instant(text)
        assert instant == (None if want is None else want.to_pydatetime()), text
        if want is not None:
            assert offset == want_offset, text


def test_property_prepare_skips_only_the_text_steps_that_change_nothing():
    """rules.prepare runs trim, blank -> missing and lower-casing only where a scan of the bytes
    (rules._needs) says some text needs it: on any text (whitespace or capitals at either end or
    inside, letters beyond ASCII, blanks, missing values), in chunks or sliced, it gives what
    running every step gives."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from hypothesis import given, settings
    from hypothesis import strategies as st

    def every_step(col, category):
        col = pc.utf8_trim(col, characters=rules.WHITESPACE_CHARS)
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        return pc.utf8_lower(col) if category else col

    text = st.one_of(st.none(), st.text(st.sampled_from(["a", "z", "Q", "é", "É", "İ", " ", "\t", "\n", "\xa0", "-", "1"]),
                                        max_size=6))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(text, min_size=1, max_size=30), st.lists(st.integers(0, 30), max_size=3), st.integers(0, 3))
    def check(texts, cuts, skip):
        bounds = sorted({0, len(texts), *(min(c, len(texts)) for c in cuts)})
        col = pa.chunked_array([pa.array(texts[a:b], type=pa.string()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
                               type=pa.string())
        col = col.slice(min(skip, len(texts) - 1))
        for name, category in (("device", True), ("user_id", False)):
            got = rules.prepare(pa.table({name: col})).column(name)
            assert got.to_pylist() == every_step(col, category).to_pylist(), (name, col.to_pylist())

    check()
    assert rules._needs(pa.array(["ab", None, "c"]), True) == (False, False, False)     # a null is not blank
    assert rules._needs(pa.array(["ab", "", "c"]), False) == (False, True, False)
    assert rules._needs(pa.array(["a b", "c "]), True) == (True, False, False)
    assert rules._needs(pa.array(["a b", "Tv"]), True) == (False, False, True)
