"""The two CSV readers (Arrow's when records are single lines of UTF-8, the csv module's otherwise)
give the same rows, numbers and reasons, so which one ran never changes a result."""

import gzip

import pandas as pd
import pytest

from ctxtag.common import text_rows
from ctxtag.common.quarantine import InputError
from ctxtag.common.text_rows import MAX_FIELD_CHARS, read_csv_rows, read_json_lines

LINES = ["user_id,track_id,location",
         "u1,t1,Paris",
         "u2,t2,",                       # blank: missing
         'u3,t3,""',                     # quoted blank: missing too
         "u4,t4,Lyon,extra",
         'u5,t5,"Nice, FR"',
         "u6",
         "u7,t7," + "x" * (MAX_FIELD_CHARS + 1),
         "u8,t8,Metz",
         "NA,null,#N/A"]                 # text, not missing values


def _both(path):
    fast_frame, fast_rej, _ = text_rows._read_fast(path, ",")
    exact_frame, exact_rej = text_rows._read_exact(path, ",")
    return text_rows._field_limit(fast_frame, fast_rej, path, ","), (exact_frame, exact_rej)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_fast_and_exact_readers_agree(tmp_path, eol):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(("\ufeff" + eol.join(LINES) + eol).encode()))
    (fast, fast_rej), (exact, exact_rej) = _both(path)
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), exact.reset_index(drop=True), check_dtype=False)
    assert fast["row"].tolist() == [2, 3, 4, 6, 9, 10]
    assert fast["location"].tolist() == ["Paris", None, None, "Nice, FR", "Metz", "#N/A"]
    assert [(r.row, r.reason) for r in fast_rej] == [(r.row, r.reason) for r in exact_rej] == [
        (5, "malformed CSV row: 4 fields, the header has 3"),
        (7, "malformed CSV row: 1 fields, the header has 3"),
        (8, f"field longer than {MAX_FIELD_CHARS} characters: location")]
    assert fast_rej[0].raw == exact_rej[0].raw == "u4,t4,Lyon,extra"


def test_files_the_fast_reader_cannot_number_go_to_the_exact_one(tmp_path):
    multiline = tmp_path / "m.csv"
    multiline.write_text('a,b\n1,"two\nlines"\n\n3,4\n')
    frame, rejections = read_csv_rows(multiline)
    assert frame["row"].tolist() == [2, 5] and frame["b"].tolist() == ["two\nlines", "4"] and not rejections
    latin1 = tmp_path / "l.csv"
    latin1.write_bytes(b"a,b\ncaf\xe9,1\nok,2\n")
    frame, _ = read_csv_rows(latin1)
    assert frame["row"].tolist() == [2, 3] and frame["a"].iloc[0] == "caf\udce9"     # kept for the rules to flag


def test_a_gzip_that_breaks_off_keeps_the_rows_before_the_break(tmp_path):
    path = tmp_path / "d.csv.gz"
    packed = gzip.compress(("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(5000))).encode())
    path.write_bytes(packed[: len(packed) // 2])                         # a truncated upload
    frame, rejections = read_csv_rows(path)
    assert 0 < len(frame) < 5000 and frame["a"].tolist() == [str(i) for i in range(len(frame))]
    assert len(rejections) == 1 and "breaks off" in rejections[0].reason
    not_gzip = tmp_path / "e.csv.gz"
    not_gzip.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(InputError, match="cannot read the compressed file"):
        read_csv_rows(not_gzip)


def test_a_stray_quote_costs_its_own_line_only(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n" + "".join(f"{i},x,y\n" for i in range(3)) + '3,"x,y\n'
                    + "".join(f"{i},x,y\n" for i in range(4, 2000)))
    frame, rejections = read_csv_rows(path)
    assert [(r.row, r.raw) for r in rejections] == [(5, '3,"x,y')]
    assert frame["a"].tolist() == [str(i) for i in range(2000) if i != 3]
    assert frame["row"].tolist() == [i + 2 for i in range(2000) if i != 3]


def test_duplicate_column_names_refuse_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a, b,b\n1,2,3\n")
    with pytest.raises(InputError, match=r"duplicate column name\(s\) \['b'\]"):
        read_csv_rows(path)


def test_a_bare_carriage_return_in_a_field_keeps_rows_numbered_by_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'a,b\n1,"x\ry"\n2,"two\nlines"\n3,z\n')
    frame, _ = read_csv_rows(path)
    assert frame["row"].tolist() == [2, 3, 5]


def test_json_lines_skip_blank_lines_and_overlong_ones_without_reading_them_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(text_rows, "MAX_LINE_CHARS", 64)
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n\n' + '{"b": "' + "x" * 500 + '"}\n{"c": 3}\r\n')
    assert list(read_json_lines(path)) == [(1, '{"a": 1}'), (3, None), (4, '{"c": 3}')]
