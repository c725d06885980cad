"""Playlists read one file at a time into codes (ctxtag.labelling.scan) give exactly what the
old whole-input pandas reader and pipeline gave (tests/labelling/reference.py): same playlists,
entries, quarantine rows and reasons, labels, counts, track metadata and stats."""

import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxtag.common.quarantine import to_frame
from ctxtag.config import LabelConfig
from ctxtag.labelling import scan
from ctxtag.labelling.labels import track_metadata
from ctxtag.labelling.pipeline import label_playlists
from ctxtag.labelling.scan import PlaylistCodes, StringTable, scan_playlists
from tests.labelling import reference

CONTEXTS = ("chill", "dance", "party", "sleep")


def _same_table(got, want):
    pd.testing.assert_frame_equal(got.playlists.reset_index(drop=True).astype({"row": "int64"}),
                                  want.playlists.reset_index(drop=True).astype({"row": "int64"}))
    pd.testing.assert_frame_equal(got.entries.reset_index(drop=True), want.entries.reset_index(drop=True),
                                  check_dtype=False)
    assert got.rejections == want.rejections


def _jsonl(path, records, eol="\n", bom=False, blank_after=()):
    lines = []
    for i, r in enumerate(records):
        lines.append(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
        if i in blank_after:
            lines.append("  ")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (eol.join(lines) + eol).encode("utf-8"))
    return path


def _mpd(path, playlists):
    path.write_text(json.dumps({"info": {"slice": "x"}, "playlists": playlists}, indent=4), encoding="utf-8")
    return path


# --- the fast way: every rule, vectorised, as the exact way applies it ------------------------------------

# per record, a way to spoil it that the schema still accepts (so the file stays on the fast way)
SPOILS = {
    "blank title": lambda r: {**r, "title": "   "},
    "wide-space title": lambda r: {**r, "title": "\u3000\u00a0"},
    "null title": lambda r: {**r, "title": None},
    "no title": lambda r: {k: v for k, v in r.items() if k != "title"},
    "long title": lambda r: {**r, "title": "party " * 200},
    "accented title": lambda r: {**r, "title": "Détente 🎧 chill"},
    "no id": lambda r: {k: v for k, v in r.items() if k != "playlist_id"},
    "blank id": lambda r: {**r, "playlist_id": " "},
    "integer id": lambda r: {**r, "playlist_id": 7},
    "padded id": lambda r: {**r, "playlist_id": f"\u00a0{r['playlist_id']} "},
    "long id": lambda r: {**r, "playlist_id": "p" * 300},
    "id of p0": lambda r: {**r, "playlist_id": "p0", "title": "another party"},
    "no tracks": lambda r: {k: v for k, v in r.items() if k != "tracks"},
    "null tracks": lambda r: {**r, "tracks": None},
    "empty tracks": lambda r: {**r, "tracks": []},
    "repeated track": lambda r: {**r, "tracks": r["tracks"] + r["tracks"][:1]},
    "padded repeat": lambda r: {**r, "tracks": r["tracks"] + [{**r["tracks"][0], "track_id": f" {r['tracks'][0]['track_id']}\t"}]},
    "no artist": lambda r: {**r, "tracks": [{k: v for k, v in t.items() if k != "artist_id"} for t in r["tracks"]]},
    "blank album": lambda r: {**r, "tracks": [{**r["tracks"][0], "album_id": ""}] + r["tracks"][1:]},
    "integer track": lambda r: {**r, "tracks": [{**t, "track_id": 5} for t in r["tracks"]]},
    "unknown track": lambda r: {**r, "tracks": r["tracks"] + [{"track_id": "zz", "artist_id": "a", "album_id": "b"}]},
    "long track id": lambda r: {**r, "tracks": [{**r["tracks"][0], "track_id": "t" * 257}]},
    "extra fields": lambda r: {**r, "user": {"x": [1, None]}, "tracks": [{**t, "pos": 1} for t in r["tracks"]]},
}


def _record(i):
    n = 1 + i % 4
    return {"playlist_id": f"p{i}", "title": ["party", "chill out", "dance & sleep", "misc"][i % 4],
            "tracks": [{"track_id": f"t{(i + k) % 9}", "artist_id": f"a{(i + k) % 3}", "album_id": f"b{(i + k) % 5}"}
                       for k in range(n)]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 14), data=st.data(), crlf=st.booleans(), bom=st.booleans(), known=st.booleans(),
       block=st.sampled_from([scan._JSONL_BLOCK, 97, 400]))
def test_property_fast_way_matches_the_old_reader_row_for_row(tmp_path_factory, n, data, crlf, bom, known, block):
    spoil = data.draw(st.dictionaries(st.integers(1, max(n - 1, 1)), st.sampled_from(sorted(SPOILS)))) if n > 1 else {}
    blank = data.draw(st.sets(st.integers(0, n - 1), max_size=2))
    records = [SPOILS[spoil[i]](_record(i)) if i in spoil else _record(i) for i in range(n)]
    path = _jsonl(tmp_path_factory.mktemp("drop") / "p.jsonl", records, "\r\n" if crlf else "\n", bom, blank)
    catalogue = {f"t{k}" for k in range(9)} if known else None

    default, scan._JSONL_BLOCK = scan._JSONL_BLOCK, block                # lines cut by read blocks too
    try:
        assert scan._decode(path, "jsonl") is not None                   # it did go the fast way
        want = reference.read_playlists([path], catalogue)
        _same_table(scan_playlists([path], catalogue, workers=0).to_table(), want)
        _same_context_entries(scan_playlists([path], catalogue, workers=0, contexts=CONTEXTS), want)
    finally:
        scan._JSONL_BLOCK = default


def _same_context_entries(codes, want):
    """Codes scanned for labelling: the same playlists and rejections, the entries of context playlists."""
    assert not codes.complete
    assert codes.playlist_ids.tolist() == want.playlists["playlist_id"].tolist()
    assert codes.titles.tolist() == want.playlists["title"].tolist()
    assert codes.rejections == want.rejections
    named = want.playlists.loc[reference.context_matrix(want.playlists["title"].tolist(), CONTEXTS).any(axis=1),
                               "playlist_id"]
    entries = pd.DataFrame({"playlist_id": codes.playlist_ids[codes.entry_playlist],
                            "track_id": codes.tracks[codes.entry_track],
                            "artist_id": codes.artists[codes.entry_artist],
                            "album_id": codes.albums[codes.entry_album]})
    pd.testing.assert_frame_equal(entries, want.entries[want.entries["playlist_id"].isin(named)].reset_index(drop=True),
                                  check_dtype=False)


def test_fast_way_matches_on_an_mpd_slice_with_every_spoil(tmp_path):
    def as_mpd(r):
        out = {"pid": r.get("playlist_id"), "name": r.get("title"), "num_tracks": 1}
        if "tracks" in r:
            out["tracks"] = None if r["tracks"] is None else [
                {"track_uri": t.get("track_id"), "artist_uri": t.get("artist_id"), "album_uri": t.get("album_id"),
                 "track_name": "x", "duration_ms": 1} for t in r["tracks"]]
        return out

    records = [_record(0)] + [spoil(_record(i + 1)) for i, spoil in enumerate(SPOILS.values())]
    path = _mpd(tmp_path / "mpd.slice.0-99.json", [as_mpd(r) for r in records])
    assert scan._decode(path, "mpd") is not None
    for catalogue in ({f"t{k}" for k in range(9)}, None):
        want = reference.read_playlists([path], catalogue)
        got = scan_playlists([path], catalogue, workers=0).to_table()
        _same_table(got, want)
        _same_context_entries(scan_playlists([path], catalogue, workers=0, contexts=CONTEXTS), want)
        assert len(got.rejections) > len(SPOILS) // 2                    # the spoils did spoil


def test_a_hash_collision_between_tracks_is_caught(tmp_path, monkeypatch):
    """Every id hashing alike: the tables still code them exactly (hash matches are checked as text)."""
    records = [_record(i) for i in range(8)] + [{**_record(8), "title": "misc", "tracks": _record(3)["tracks"] * 2}]
    path = _jsonl(tmp_path / "p.jsonl", records)
    monkeypatch.setattr(scan, "hash_strings", lambda arr: np.full(len(arr), 7, dtype=np.int64))   # all collide
    want = reference.read_playlists([path])
    _same_context_entries(scan_playlists([path], workers=0, contexts=CONTEXTS), want)
    assert [r.reason for r in want.rejections] == ["duplicate track_id within the playlist"] * 4


def test_gzipped_files_read_the_fast_way_too(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(scan, "_JSONL_BLOCK", 300)                       # blocks cut lines here as well
    records = [SPOILS["repeated track"](_record(i)) if i % 4 == 1 else _record(i) for i in range(20)]
    plain = _jsonl(tmp_path / "p.jsonl", records, blank_after={3})
    packed = tmp_path / "q.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert scan._decode(packed, "jsonl") is not None
    got, want = scan_playlists([packed], workers=0).to_table(), reference.read_playlists([packed])
    _same_table(got, want)
    assert len(got.rejections) == 5


def test_a_file_the_schema_refuses_goes_the_exact_way_and_costs_only_its_bad_record(tmp_path):
    records = [_record(0), {"playlist_id": "p1", "title": 2020, "tracks": []}, "{not json", _record(3)]
    path = _jsonl(tmp_path / "p.jsonl", records)
    assert scan._decode(path, "jsonl") is None
    got = scan_playlists([path], workers=0).to_table()
    _same_table(got, reference.read_playlists([path]))
    assert [(r.row, r.reason.split(":")[0]) for r in got.rejections] == [(3, "invalid JSON"),
                                                                          (2, "title must be text, not integer")]


def test_lines_are_numbered_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "_JSONL_BLOCK", 100)                       # many blocks, lines cut across them
    records = [SPOILS["blank title"](_record(i)) if i % 5 == 3 else _record(i) for i in range(30)]
    path = _jsonl(tmp_path / "p.jsonl", records, blank_after={4, 11})
    got = scan_playlists([path], workers=0).to_table()
    _same_table(got, reference.read_playlists([path]))
    assert {r.row for r in got.rejections} == {4, 10, 16, 21, 26, 31}   # blank lines 6 and 14 counted


@pytest.mark.parametrize("lines", [
    ['{"playlist_id": "a", "title": "party", "tracks": []} {"playlist_id": "b", "title": "x", "tracks": []}', "   "],
    ['{"playlist_id": "a", "title": "party", "tracks": []}\r{"playlist_id": "b", "title": "x", "tracks": []}', ""],
    [' {"playlist_id": "a", "title": "party", "tracks": [{"track_id": "t", "artist_id": "a", "album_id": "b"}]}'],
])
def test_two_values_on_a_line_or_odd_blank_lines_read_as_the_old_reader_reads_them(tmp_path, lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([json.dumps(_record(0)), *lines, json.dumps(_record(1))]) + "\n")
    _same_table(scan_playlists([path], workers=0).to_table(), reference.read_playlists([path]))


def test_a_line_near_the_length_limit_goes_the_exact_way(tmp_path, monkeypatch):
    import ctxtag.common.text_rows as text_rows
    from ctxtag.labelling import playlists

    for module in (text_rows, playlists, scan):                          # the limit, where each module reads it
        monkeypatch.setattr(module, "MAX_LINE_CHARS", 400)
    path = _jsonl(tmp_path / "p.jsonl", [_record(0), SPOILS["long title"](_record(1)), _record(2)])
    assert scan._decode(path, "jsonl") is None
    got = scan_playlists([path], workers=0).to_table()
    assert [(r.row, r.reason) for r in got.rejections] == [(2, "line longer than 400 characters")]
    assert sorted(got.playlists["playlist_id"]) == ["p0", "p2"]


def test_ids_are_spelt_as_the_rules_spell_them():
    ids = scan._Ids.of(["t1", " t1 ", 5, "5", None, "", "  ", "\u00a0é\t", "t\u3000", "x"])
    assert ids.py == ["t1", "t1", "5", "5", None, None, None, "é", "t", "x"]
    assert ids.arr.to_pylist() == ids.py
    ascii_only = scan._Ids.of(["a", "\x1fb ", "", None, "c"])                 # the Arrow way
    assert ascii_only.py == ascii_only.arr.to_pylist() == ["a", "b", None, None, "c"]


def test_ids_that_need_no_stripping_are_taken_as_they_are():
    raw = pa.array(["t1", None, "a b", "x"])
    assert scan._trimmed(raw) and scan._Ids.of(raw).arr is raw
    for odd in (["t1", ""], ["t1", " a"], ["a\t"], ["\u00a0a"], ["a\u3000"], ["é"]):    # "é": strip's call
        assert not scan._trimmed(pa.array(odd))


WORDS = ["", "a", "a\x00", "b", "12345678", "123456789", "spotify:track:" + "x" * 22, "é" * 9, "ab" * 40, " a "]


def test_equal_strings_hash_equal_wherever_arrow_holds_them():
    want = scan.hash_strings(pa.array(WORDS)).tolist()
    assert len(set(want)) == len(WORDS)                                   # ("a" and "a\0" too: the length counts)
    held = pa.array(["pad", None, *WORDS, "tail"], type=pa.large_string())[2:2 + len(WORDS)]   # a slice, 64-bit offsets
    assert scan.hash_strings(held).tolist() == want
    assert scan.hash_strings(pa.chunked_array([WORDS[:3], [], WORDS[3:]])).tolist() == want
    assert [scan.hash_strings(pa.array([w]))[0] for w in WORDS] == want   # a word's last bytes end the buffer
    assert scan.hash_strings(pa.array(["b", None])).tolist() == [want[3], 0]
    assert len(scan.hash_strings(pa.array([], pa.string()))) == 0


def test_the_hash_is_the_same_in_another_interpreter():
    """Unlike Python's ``hash`` (salted per interpreter): a spawned worker's hashes are the parent's."""
    import os
    import subprocess
    import sys

    code = ("import json, sys, pyarrow as pa; from ctxtag.labelling.scan import hash_strings; "
            "print(json.dumps(hash_strings(pa.array(json.loads(sys.argv[1]))).tolist()))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(WORDS)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert json.loads(out) == scan.hash_strings(pa.array(WORDS)).tolist()


def test_the_hash_spreads_look_alike_ids_over_a_table_s_slots():
    ids = pa.array([f"spotify:track:{i:022d}" for i in range(100_000)])    # differing in a few bytes only
    h = scan.hash_strings(ids)
    assert len(np.unique(h)) == len(ids)
    per_slot = np.bincount(h & 4095, minlength=4096)                     # the low bits pick the slot
    assert per_slot.max() < 2 * len(ids) / 4096


@pytest.mark.parametrize("weak_hash", [False, True])
def test_string_table_codes_strings_in_order_of_first_sight_even_when_hashes_collide(weak_hash):
    import random

    rng = random.Random(0)
    table, want = StringTable(capacity=16), {}
    words = [f"w{rng.randint(0, 400)}" + "é" * (rng.random() < 0.3) for _ in range(6000)]
    for start in range(0, len(words), 250):
        batch = words[start:start + 250]
        h = np.array([len(w) % 3 for w in batch], dtype=np.int64) if weak_hash else scan.hash_strings(pa.array(batch))
        codes = table.lookup(pa.array(batch), h)
        assert codes.tolist() == [want.setdefault(w, len(want)) for w in batch]
    assert table.strings().to_pylist() == list(want)
    probe = ["w1x", words[0]]
    h = np.array([len(w) % 3 for w in probe], dtype=np.int64) if weak_hash else scan.hash_strings(pa.array(probe))
    assert table.lookup(pa.array(probe), h, insert=False).tolist() == [-1, want[words[0]]]
    strings, hashes = table.take_new()
    assert strings.to_pylist() == list(want) and len(hashes) == len(want) and len(table.take_new()[0]) == 0
    table.lookup(pa.array(["one more"]), np.array([1], dtype=np.int64))
    strings, _ = table.take_new()                      # what a worker sends: the new string, not the table
    assert strings.to_pylist() == ["one more"] and len(pickle.dumps(strings)) < 1000


# --- many files: per file, in workers or not, as the whole input read at once ------------------------------

def _drop(tmp_path, n_files=4, per_file=60, seed=0):
    """Files of context playlists whose tracks recur across files (so they get labelled), with
    cross-file duplicate ids, one-artist playlists, long ones, ties in a track's (artist, album)."""
    rng = np.random.default_rng(seed)
    titles = ["party time", "Chill", "dance dance", "sleep & chill", "#Party!!", "my favs", "sleepy",
              "DANCE party", "road trip"]
    paths = []
    for f in range(n_files):
        records = []
        for i in range(per_file):
            pid = f"p{rng.integers(0, n_files * per_file * 9 // 10)}" if rng.random() < 0.05 else f"p{f}-{i}"
            size = int(rng.integers(3, 12)) if rng.random() > 0.03 else 105
            tracks = rng.choice(400, size=min(size, 400), replace=False, p=None)
            one_artist = rng.random() < 0.05
            entries = []
            for t in tracks.tolist():
                t = int(t) % 80 if rng.random() < 0.7 else int(t)               # a popular head
                variant = rng.integers(0, 2) if t % 7 == 0 else 0                # some tracks on two albums
                entries.append({"track_id": f"t{t:03d}", "artist_id": "solo" if one_artist else f"a{(t + variant) % 37}",
                                "album_id": f"al{t % 50}-{variant}"})
            records.append({"playlist_id": pid, "title": titles[rng.integers(len(titles))], "tracks": entries})
        records[3] = {**records[3], "title": ""}                                 # some dirt in each file
        records[5]["tracks"].append(records[5]["tracks"][0])
        paths.append(_jsonl(tmp_path / f"part-{f}.jsonl", records))
    return paths


def test_workers_give_what_one_process_gives(tmp_path):
    paths = _drop(tmp_path)
    one = scan_playlists(paths, workers=0)
    two = scan_playlists(paths, workers=2)
    _same_table(two.to_table(), one.to_table())
    _same_table(one.to_table(), reference.read_playlists(paths))
    assert len(one.rejections) > len(paths)
    _same_context_entries(scan_playlists(paths, workers=2, contexts=CONTEXTS), reference.read_playlists(paths))


@pytest.mark.parametrize("balance_cap", [None, 5])
def test_labels_counts_tracks_and_stats_are_those_of_the_old_pipeline(tmp_path, balance_cap):
    paths = _drop(tmp_path, n_files=5, per_file=80)
    catalogue = {f"t{k:03d}" for k in range(380)}                            # t380..t399 are unknown
    cfg = LabelConfig(balance_cap=balance_cap)
    ref_final, ref_stats, ref_quarantine = reference.label_playlists(reference.read_playlists(paths, catalogue),
                                                                     CONTEXTS, cfg, seed=3)
    assert ref_stats["tracks_labelled"] > 20 and ref_stats["dropped_any_filter"] > 0
    assert ref_stats["rows_quarantined"] > 0
    for codes in (scan_playlists(paths, catalogue, workers=0), scan_playlists(paths, catalogue, workers=0, contexts=CONTEXTS)):
        final, stats, quarantine = label_playlists(codes, CONTEXTS, cfg, seed=3)
        assert stats == ref_stats
        assert final.track_ids.tolist() == ref_final.track_ids.tolist()
        assert np.array_equal(final.counts, ref_final.counts) and final.counts.dtype == ref_final.counts.dtype
        assert np.array_equal(final.labels, ref_final.labels) and final.labels.dtype == ref_final.labels.dtype
        pd.testing.assert_frame_equal(final.tracks, ref_final.tracks)
        pd.testing.assert_frame_equal(quarantine, ref_quarantine)
    # and from a table built some other way (PlaylistCodes.from_table)
    again, again_stats, _ = label_playlists(reference.read_playlists(paths, catalogue), CONTEXTS, cfg, seed=3)
    assert again_stats == ref_stats and again.track_ids.tolist() == ref_final.track_ids.tolist()


def test_track_metadata_takes_the_most_frequent_pair_and_settles_ties_by_text():
    # track 0: (a2, b1) x2 beats (a1, b9) x1; track 1: (a1, b2) and (a0, b5) twice each -> a0, b5
    artists = np.array(["a0", "a1", "a2"], dtype=object)
    albums = np.array(["b1", "b2", "b5", "b9"], dtype=object)
    t = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    a = np.array([2, 1, 2, 1, 0, 1, 0, 1])
    b = np.array([0, 3, 0, 1, 2, 1, 2, 1])
    got = track_metadata(t, a, b, np.array([1, 0]), artists, albums)
    assert got.values.tolist() == [["a0", "b5"], ["a2", "b1"]]
    ref = reference.track_metadata(pd.DataFrame({"track_id": t, "artist_id": artists[a], "album_id": albums[b]}),
                                   np.array([1, 0]))
    assert ref[["artist_id", "album_id"]].values.tolist() == got.values.tolist()


def test_codes_spell_out_to_the_table_they_came_from(tmp_path):
    paths = _drop(tmp_path, n_files=2)
    table = reference.read_playlists(paths)
    codes = PlaylistCodes.from_table(table)
    back = codes.to_table()
    pd.testing.assert_frame_equal(back.entries, table.entries.astype(object))
    assert back.playlists["playlist_id"].tolist() == table.playlists["playlist_id"].tolist()
    assert to_frame(back.rejections).equals(to_frame(table.rejections))


def _catalogue_ids(path, probes):
    """Which ``probes`` the scan finds in the catalogue: lookups in its table (None: no catalogue)."""
    table, _ = scan.catalogue_table(path)
    if table is None:
        return None
    return {p for p in probes if table.lookup(pa.array([p]), scan.hash_strings(pa.array([p])), insert=False)[0] >= 0}


def test_the_catalogue_reads_as_known_track_ids_reads_it(tmp_path):
    from ctxtag.common.io import known_track_ids

    path = tmp_path / "tracks.csv"
    path.write_bytes('\ufefftrack_id,title\r\nt1,a\r\n"NA",b\nnull,c\n,d\n"t\n2",e\n  t3 ,f\n"q""x",g\n'.encode())
    want = known_track_ids(path)
    probes = ["t1", "NA", "null", "", "t\n2", "  t3 ", "t3", 'q"x', "title", "a"]
    got = _catalogue_ids(path, probes)
    assert [p in got for p in probes] == [p in want for p in probes] == [True, False, False, False, True, True,
                                                                          False, True, False, False]
    odd = tmp_path / "odd.csv"                     # more fields than the header: Arrow refuses, pandas reads
    odd.write_text("track_id,title\nt1,a,extra\nt2,b,more\n")
    probes = ["t1", "a", "b"]
    assert [p in _catalogue_ids(odd, probes) for p in probes] == [p in known_track_ids(odd) for p in probes]
    assert _catalogue_ids(tmp_path / "none.csv", probes) is None


GOOD = [_record(0), _record(1)]
ODD_LINES = {   # what Arrow's JSON reader would let through and the old reader quarantines or refuses
    "bytes not UTF-8 in a title": b'{"playlist_id": "p9", "title": "party \xff", "tracks": []}',
    "bytes not UTF-8 in an extra field": b'{"playlist_id": "p9", "title": "party", "x": "\xff", "tracks": []}',
    "nesting past the recursion limit": b'{"playlist_id": "p9", "title": "party", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "NaN in an extra field": b'{"playlist_id": "p9", "title": "party", "x": NaN, "tracks": []}',
    "a null entry": b'{"playlist_id": "p9", "title": "party", "tracks": [null, {"track_id": "t1", "artist_id": "a", "album_id": "b"}]}',
    "an empty entry": b'{"playlist_id": "p9", "title": "party", "tracks": [{}]}',
    "no tracks in any record": None,
    "all good, CRLF and a BOM": None,
}


@pytest.mark.parametrize("case", sorted(ODD_LINES))
def test_the_arrow_reader_and_the_old_reader_agree_on_odd_lines(tmp_path, case):
    """JSON lines decoded by Arrow (one object per line, the schema's fields, text values) give
    what the old reader gave; a line it would read differently sends the file the other way."""
    path = tmp_path / "p.jsonl"
    if case == "no tracks in any record":
        _jsonl(path, [{"playlist_id": "p1", "title": "party"}, {"playlist_id": "p2", "title": "x", "tracks": None}])
    elif case == "all good, CRLF and a BOM":
        _jsonl(path, GOOD * 2, "\r\n", bom=True)
        assert scan._decode_jsonl_arrow(path) is not None              # it did go Arrow's way
    else:
        path.write_bytes(b"\n".join([json.dumps(r).encode() for r in GOOD] + [ODD_LINES[case]]) + b"\n")
    for catalogue in (None, {f"t{k}" for k in range(9)}):
        want = reference.read_playlists([path], catalogue)
        _same_table(scan_playlists([path], catalogue, workers=0).to_table(), want)
        _same_context_entries(scan_playlists([path], catalogue, workers=0, contexts=CONTEXTS), want)
