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


def test_missing_columns_name_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"playlist_id": [1], "title": ["x"], "track_id": ["t"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"bad\.csv: missing required column\(s\) \['artist_id', 'album_id'\]"):
        read_playlists([path])


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
