import json

import pandas as pd
import pytest

from ctxtag.common.quarantine import InputError, to_frame, write_quarantine
from ctxtag.labelling.playlists import read_playlists


def _pl(pid, title, tracks):
    return {"playlist_id": pid, "title": title,
            "tracks": [{"track_id": t, "artist_id": f"ar-{t}", "album_id": f"al-{t}"} for t in tracks]}


GOOD = [_pl("1", "party", ["t1", "t2"]), _pl("2", "#Chill", ["t2", "t3", "t4"])]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _flat(records):
    return pd.DataFrame([{"playlist_id": r["playlist_id"], "title": r["title"], **t}
                         for r in records for t in r["tracks"]])


def _assert_good(table):
    assert sorted(table.playlists["playlist_id"]) == ["1", "2"]
    assert table.playlists.set_index("playlist_id")["title"].to_dict() == {"1": "party", "2": "#Chill"}
    assert len(table.entries) == 5
    assert table.rejections == []


def test_jsonl(tmp_path):
    _assert_good(read_playlists([_write_jsonl(tmp_path / "p.jsonl", GOOD)]))


def test_csv_flat(tmp_path):
    path = tmp_path / "p.csv"
    _flat(GOOD).to_csv(path, index=False)
    _assert_good(read_playlists([path]))


def test_parquet_flat_and_nested(tmp_path):
    flat, nested = tmp_path / "flat.parquet", tmp_path / "nested.parquet"
    _flat(GOOD).to_parquet(flat)
    pd.DataFrame(GOOD).to_parquet(nested)
    _assert_good(read_playlists([flat]))
    _assert_good(read_playlists([nested]))


def test_million_playlist_dataset_slice(tmp_path):
    doc = {"info": {"slice": "0-1"}, "playlists": [
        {"name": "Workout", "pid": 7, "num_tracks": 2, "tracks": [
            {"pos": 0, "track_uri": "spotify:track:a", "artist_uri": "spotify:artist:x",
             "album_uri": "spotify:album:y", "track_name": "A"},
            {"pos": 1, "track_uri": "spotify:track:b", "artist_uri": "spotify:artist:z",
             "album_uri": "spotify:album:w", "track_name": "B"}]}]}
    path = tmp_path / "mpd.slice.0-1.json"
    path.write_text(json.dumps(doc))
    table = read_playlists([path])
    assert table.playlists[["playlist_id", "title"]].values.tolist() == [["7", "Workout"]]
    assert table.entries["track_id"].tolist() == ["spotify:track:a", "spotify:track:b"]


def test_a_file_without_required_columns_is_refused_and_the_others_go_on(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"playlist_id": [1], "title": ["x"], "track_id": ["t"]}).to_csv(bad, index=False)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    table = read_playlists([bad, corrupt, _write_jsonl(tmp_path / "good.jsonl", GOOD)])
    refusals = {r.source: r for r in table.rejections}
    assert set(refusals) == {str(bad), str(corrupt)}
    assert refusals[str(bad)].row == 0
    assert refusals[str(bad)].reason == "file refused: missing required column(s) ['artist_id', 'album_id']; " \
        "found ['playlist_id', 'title', 'track_id']"
    assert refusals[str(corrupt)].reason.startswith("file refused: ArrowInvalid")
    table.rejections.clear()
    _assert_good(table)


def test_wrong_shapes_in_json_lines_cost_only_their_record(tmp_path):
    huge = "x" * 1_000_000
    records = [
        GOOD[0],
        {"playlist_id": "3", "title": "gym", "tracks": "t1,t2"},                      # 2: tracks a string
        {"playlist_id": {"id": 4}, "title": "run", "tracks": GOOD[0]["tracks"]},       # 3: id an object
        {"playlist_id": "5", "title": 2020, "tracks": GOOD[0]["tracks"]},              # 4: title a number
        {"playlist_id": "6", "title": huge, "tracks": GOOD[0]["tracks"]},              # 5: 1 MB title
        {"playlist_id": "7", "title": "car", "tracks": None},                          # 6: null tracks
        {"playlist_id": "8", "tracks": GOOD[0]["tracks"]},                             # 7: no title
        [1, 2],                                                                        # 8: not an object
        {"playlist_id": "9", "title": "sleep", "tracks": [{"track_id": ["t1"], "artist_id": "a", "album_id": "b"}]},
        {"playlist_id": True, "title": "bool id", "tracks": GOOD[0]["tracks"]},        # 10: boolean id
        GOOD[1],
    ]
    path = tmp_path / "p.jsonl"
    # a BOM and CRLF line ends, as a Windows tool writes them
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in records).encode())
    table = read_playlists([path])
    reasons = {r.row: r.reason for r in table.rejections}
    assert reasons == {
        2: "'tracks' must be a list of {track_id, artist_id, album_id}, not text",
        3: "playlist_id must be text or an integer, not object",
        4: "title must be text, not integer",
        5: "title longer than 1000 characters",
        6: "empty playlist: no tracks",
        7: "missing title",
        8: "not a playlist object: a JSON list",
        9: "track_id must be text or an integer, not list",
        10: "playlist_id must be text or an integer, not boolean",
    }
    _assert_good_and_only(table)


def _assert_good_and_only(table):
    """The two good playlists, whole, and nothing else kept."""
    assert sorted(table.playlists["playlist_id"]) == ["1", "2"]
    assert table.playlists.set_index("playlist_id")["title"].to_dict() == {"1": "party", "2": "#Chill"}
    assert len(table.entries) == 5


def test_malformed_csv_rows_cost_only_their_row(tmp_path):
    lines = ["playlist_id,title,track_id,artist_id,album_id",
             "1,party,t1,ar-t1,al-t1",
             "1,party,t2,ar-t2,al-t2,EXTRA",                    # 3: too many fields
             "2,#Chill,t2,ar-t2,al-t2",
             "2,#Chill,t3",                                     # 5: too few
             '2,"#Chill",t3,"ar-t3",al-t3',
             '9,"two-line',                                      # 7-8: a quoted newline, one record
             'title",t9,ar-t9,al-t9',
             "2,#Chill,t4,ar-t4,al-t4",
             "1,party,t2,ar-t2,al-t2"]
    path = tmp_path / "p.csv.gz"
    import gzip

    path.write_bytes(gzip.compress(("\r\n".join(lines) + "\r\n").encode()))
    table = read_playlists([tmp_path])                 # a folder: the .csv.gz is read too
    reasons = {r.row: r.reason for r in table.rejections}
    assert reasons == {3: "malformed CSV row: 6 fields, the header has 5",
                       5: "malformed CSV row: 3 fields, the header has 5"}
    assert table.rejections[0].raw == "1,party,t2,ar-t2,al-t2,EXTRA"
    assert table.playlists.set_index("playlist_id")["title"].to_dict() == {
        "1": "party", "2": "#Chill", "9": "two-line\r\ntitle"}
    assert table.playlists.set_index("playlist_id")["row"].to_dict() == {"1": 2, "2": 4, "9": 7}
    assert len(table.entries) == 6


@pytest.mark.parametrize("content", [b"", b"playlist_id,title,track_id,artist_id,album_id\n"])
def test_empty_and_header_only_csv_give_no_rows_and_no_error(tmp_path, content):
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    table = read_playlists([path, _write_jsonl(tmp_path / "good.jsonl", GOOD)])
    _assert_good(table)


def test_parquet_with_wrong_column_types_and_extra_columns(tmp_path):
    frame = _flat(GOOD).assign(extra=1.5)
    frame["title"] = [1, 1, 2, 2, 2]                   # titles stored as numbers
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    table = read_playlists([path])
    assert {r.reason for r in table.rejections} == {"title must be text, not integer"}
    assert len(table.rejections) == 5 and table.entries.empty


def test_bad_rows_are_quarantined_with_row_and_reason_valid_rows_go_on(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(r) for r in GOOD]                                 # lines 1-2 fine
    lines.append(json.dumps(_pl("3", "empty one", [])))                   # 3: empty playlist
    lines.append(json.dumps(_pl("1", "party again", ["t9"])))             # 4: duplicate id
    lines.append("{not json")                                             # 5: invalid JSON
    lines.append(json.dumps(_pl("4", "sad", ["t1", "t1", "t5"])))         # 6: duplicate track
    lines.append(json.dumps({"playlist_id": "5", "title": "gym",
                             "tracks": [{"track_id": "t6", "artist_id": "a"}]}))   # 7: no album
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    bad_title = json.dumps(_pl("6", "PLACEHOLDER", ["t7"])).encode("utf-8").replace(b"PLACEHOLDER", b"caf\xe9 party")
    raw += bad_title + b"\n"                                              # 8: not UTF-8
    path.write_bytes(raw)
    before = path.read_bytes()

    table = read_playlists([path])
    reasons = {(r.row, r.reason.split(":")[0]) for r in table.rejections}
    assert reasons == {
        (3, "empty playlist"), (4, "duplicate playlist_id"), (5, "invalid JSON"),
        (6, "duplicate track_id within the playlist"), (7, "missing album_id"), (8, "not valid UTF-8"),
    }
    assert all(r.source == str(path) for r in table.rejections)
    assert sorted(table.playlists["playlist_id"]) == ["1", "2", "4"]
    assert sorted(table.entries.query("playlist_id == '4'")["track_id"]) == ["t1", "t5"]
    assert path.read_bytes() == before                                    # raw input untouched

    out = tmp_path / "q.jsonl"
    assert write_quarantine(table.rejections, out) == 6
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert any("caf\\xe9 party" in w["raw"] for w in written)           # the bad bytes are kept


def test_unknown_track_ids_are_quarantined(tmp_path):
    table = read_playlists([_write_jsonl(tmp_path / "p.jsonl", GOOD)], known_tracks={"t1", "t2", "t3"})
    rej = to_frame(table.rejections)
    assert rej["track_id"].tolist() == ["t4"]
    assert rej["reason"].iloc[0].startswith("unknown track_id")
    assert len(table.entries) == 4


def test_flat_csv_conflicting_title_is_a_duplicate_id(tmp_path):
    path = tmp_path / "p.csv"
    frame = _flat(GOOD)
    frame.loc[len(frame)] = ["2", "another title", "t8", "a8", "b8"]
    frame.to_csv(path, index=False)
    table = read_playlists([path])
    assert [(r.row, r.reason) for r in table.rejections] == [(7, "duplicate playlist_id: first seen at row 4")]
    table.rejections.clear()
    _assert_good(table)


def test_same_id_in_two_files_keeps_the_first(tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", GOOD)
    b = _write_jsonl(tmp_path / "b.jsonl", [_pl("2", "other", ["t9"]), _pl("9", "new", ["t9"])])
    table = read_playlists([a, b])
    assert sorted(table.playlists["playlist_id"]) == ["1", "2", "9"]
    assert "t9" in table.entries.query("playlist_id == '9'")["track_id"].tolist()
    assert table.entries.query("playlist_id == '2'")["track_id"].tolist() == ["t2", "t3", "t4"]
    assert [r.reason for r in table.rejections] == [f"duplicate playlist_id: first seen in {a} row 2"]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_playlists([tmp_path / "nope.jsonl"])


# --- property: corrupt random records of a valid drop in random ways -----------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _line(rec):
    return json.dumps(rec).encode()


# corruption -> (the record's new line, the reason it must name); records keep their own line
JSONL_CORRUPTIONS = {
    "truncated": (lambda r: _line(r)[: len(_line(r)) // 2], "invalid JSON"),
    "not an object": (lambda r: _line([r["playlist_id"], r["title"]]), "not a playlist object"),
    "tracks a string": (lambda r: _line({**r, "tracks": "t1,t2"}), "'tracks' must be a list"),
    "id an object": (lambda r: _line({**r, "playlist_id": {"id": r["playlist_id"]}}), "playlist_id must be"),
    "title a number": (lambda r: _line({**r, "title": 2020}), "title must be text"),
    "title null": (lambda r: _line({**r, "title": None}), "missing title"),
    "no title": (lambda r: _line({k: v for k, v in r.items() if k != "title"}), "missing title"),
    "huge title": (lambda r: _line({**r, "title": "party " * 200_000}), "title longer than"),
    "not UTF-8": (lambda r: _line({**r, "title": "PLACEHOLDER"}).replace(b"PLACEHOLDER", b"caf\xe9"), "not valid UTF-8"),
    "no tracks": (lambda r: _line({**r, "tracks": []}), "empty playlist"),
    "duplicate id": (lambda r: _line({**r, "playlist_id": "p0", "title": "another"}), "duplicate playlist_id"),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 20), data=st.data(), crlf=st.booleans(), bom=st.booleans())
def test_property_corrupt_records_are_quarantined_and_every_valid_record_kept_once(tmp_path_factory, n, data, crlf, bom):
    records = [_pl(f"p{i}", ["party", "gym workout", "sleep"][i % 3], [f"t{i}", f"t{i + 1}", f"t{i + 2}"][: 1 + i % 3])
               for i in range(n)]
    # record 0 stays valid, so "duplicate id" (a second p0) has a first to duplicate
    bad = data.draw(st.dictionaries(st.integers(1, n - 1), st.sampled_from(sorted(JSONL_CORRUPTIONS)))) if n > 1 else {}
    lines = [JSONL_CORRUPTIONS[bad[i]][0](r) if i in bad else _line(r) for i, r in enumerate(records)]
    eol = b"\r\n" if crlf else b"\n"
    path = tmp_path_factory.mktemp("drop") / "p.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + eol.join(lines) + eol)
    before = path.read_bytes()

    table = read_playlists([path])                                       # no exception escapes

    got = {r.row: r.reason for r in table.rejections}
    assert set(got) == {i + 1 for i in bad}
    for i, kind in bad.items():
        assert JSONL_CORRUPTIONS[kind][1] in got[i + 1], (kind, got[i + 1])
    valid = [r for i, r in enumerate(records) if i not in bad]
    assert sorted(table.playlists["playlist_id"]) == sorted(r["playlist_id"] for r in valid)   # each once
    assert len(table.entries) == sum(len(r["tracks"]) for r in valid)
    assert path.read_bytes() == before


def test_million_playlist_dataset_slice_bad_playlists_cost_only_themselves(tmp_path):
    track = {"track_uri": "spotify:track:a", "artist_uri": "spotify:artist:x", "album_uri": "spotify:album:y"}
    doc = {"info": {}, "playlists": [
        {"name": "Workout", "pid": 7, "tracks": [track]},
        "not a playlist",                                                   # 2
        {"name": "Chill", "pid": 8, "tracks": "spotify:track:a"},           # 3
        {"name": "Sleep", "pid": {"n": 9}, "tracks": [track]},              # 4
        {"name": "Party", "pid": 10, "tracks": [track, 42]},                # 5: the second entry only
        {"name": 11, "pid": 11, "tracks": [track]},                         # 6
    ]}
    path = tmp_path / "mpd.slice.0-5.json"
    path.write_text(json.dumps(doc))
    table = read_playlists([path])
    assert {(r.row, r.reason) for r in table.rejections} == {
        (2, "not a playlist object: a JSON text"),
        (3, "'tracks' must be a list of {track_id, artist_id, album_id}, not text"),
        (4, "playlist_id must be text or an integer, not object"),
        (5, "malformed track entry: expected an object with track_id, artist_id, album_id"),
        (6, "title must be text, not integer"),
    }
    assert sorted(table.playlists["playlist_id"]) == ["10", "7"]
    assert len(table.entries) == 2


def test_null_lines_lone_surrogates_and_deep_nesting_cost_only_their_record(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([
        json.dumps(GOOD[0]),
        "null",                                                                    # 2
        json.dumps(_pl("3", "\ud800 party", ["t1"])),                             # 3: a lone surrogate escape
        "[" * 100_000 + "]" * 100_000,                                             # 4: nested too deeply
        json.dumps({**_pl("5", "NA", ["t1"]), "playlist_id": "null"}),             # 5: "NA", "null" are text
        json.dumps(GOOD[1]),
    ]) + "\n")
    table = read_playlists([path])
    reasons = {r.row: r.reason for r in table.rejections}
    assert reasons == {2: "not a playlist object: a JSON null",
                       3: "not valid UTF-8: title contains undecodable bytes",
                       4: "invalid JSON: nested too deeply"}
    assert sorted(table.playlists["playlist_id"]) == ["1", "2", "null"]
    out = tmp_path / "q.jsonl"
    write_quarantine(table.rejections, out)                                    # a lone surrogate is writable
    assert "\\\\ud800" in out.read_text(encoding="utf-8")
