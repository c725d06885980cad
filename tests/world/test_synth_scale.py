"""The generator at scale: events drawn and written chunk by chunk (a tiny CHUNK forces several),
timestamps built as bytes, the vectorised playlist sampler of large worlds, and the demo world
unchanged byte for byte."""

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ctxtag.config import SynthConfig, load_params
from ctxtag.world import catalogue, listeners
from ctxtag.world.eventlog import timestamps
from ctxtag.world.profiles import TIMEZONES
from ctxtag.world.synth import generate
from tests.conftest import CONTEXTS, ROOT

CFG = dataclasses.replace(SynthConfig(), n_artists=30, n_users=40, n_context_playlists=120, n_noise_playlists=20,
                          n_filtered_playlists=6, n_events=12_000, days=28)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def logs_of(out: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p, dtype=str, keep_default_na=False)
            for p in sorted((out / "listening_logs").glob("*.csv"))}


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """12,000 events in chunks of 5,000: three chunks."""
    mp = pytest.MonkeyPatch()
    mp.setattr(listeners, "CHUNK", 5_000)
    try:
        out = tmp_path_factory.mktemp("chunked")
        world = generate(CFG, CONTEXTS, seed=9, out=out, audio=False)
        again = tmp_path_factory.mktemp("again")
        generate(CFG, CONTEXTS, seed=9, out=again, audio=False)
    finally:
        mp.undo()
    return world, out, again


def test_chunk_sizes():
    assert listeners.chunk_sizes(12_000, 5_000) == [5_000, 5_000, 2_000]
    assert listeners.chunk_sizes(10_000, 5_000) == [5_000, 5_000]
    assert listeners.chunk_sizes(40_000) == [40_000]              # the demo: one chunk
    assert listeners.chunk_sizes(0, 5) == [0]


def test_chunked_generation_is_deterministic(chunked, tmp_path, monkeypatch):
    _, out, again = chunked
    assert digest(out) == digest(again)
    monkeypatch.setattr(listeners, "CHUNK", 5_000)
    generate(CFG, CONTEXTS, seed=10, out=tmp_path, audio=False)
    assert digest(tmp_path)["listening_logs/2026-01-05.part0001.csv"] != digest(out)["listening_logs/2026-01-05.part0001.csv"]


def test_chunked_world_writes_every_event_once_per_chunk_and_day(chunked):
    world, out, _ = chunked
    assert world.events is None and world.n_events == CFG.n_events      # January: no DST, none dropped
    logs = logs_of(out)
    part = {name: re.sub(r"^\d{4}-\d\d-\d\d", "", name) for name in logs}
    assert set(part.values()) == {".csv", ".part0001.csv", ".part0002.csv"}
    rows = {p: sum(len(f) for n, f in logs.items() if part[n] == p) for p in set(part.values())}
    assert rows == {".csv": 5_000, ".part0001.csv": 5_000, ".part0002.csv": 2_000}
    truth = pd.read_csv(out / "truth/event_contexts.csv", dtype=str)
    assert len(truth) == CFG.n_events == json.loads((out / "truth/world.json").read_text())["events"]
    assert set(truth["true_context"]) <= set(CONTEXTS)
    every = pd.concat(logs.values(), ignore_index=True)
    key = ["user_id", "track_id", "timestamp"]
    assert sorted(map(tuple, every[key].to_numpy())) == sorted(map(tuple, truth[key].to_numpy()))
    assert every["feedback"].isin(["", "like", "skip", "dislike"]).all()
    assert {"like", "skip"} <= set(every["feedback"])


def test_chunked_timestamps_are_iso_with_the_users_offset_and_files_are_in_local_order(chunked):
    _, out, _ = chunked
    zone = pd.read_csv(out / "users.csv", dtype=str).set_index("user_id")["timezone"]
    for name, f in logs_of(out).items():
        assert f["timestamp"].str.match(STAMP).all(), name
        assert (f["timestamp"].str[:10] == name[:10]).all(), name            # the file's local day
        local = f["timestamp"].str[:19]
        assert (local.to_numpy()[1:] >= local.to_numpy()[:-1]).all(), name    # sorted by local time
        instants = pd.to_datetime(f["timestamp"], utc=True)
        for tz, rows in f.groupby(zone.loc[f["user_id"]].to_numpy()).groups.items():
            # each offset is the user's zone's offset at that instant, written as isoformat does
            back = instants[rows].dt.tz_convert(tz).map(lambda ts: ts.isoformat())
            assert (back == f.loc[rows, "timestamp"]).all(), (name, tz)


def test_first_chunk_is_the_one_chunk_world_of_its_size(chunked, tmp_path):
    """Chunk 0 draws from the world's generator exactly as a one-chunk world does: the demo path."""
    _, out, _ = chunked
    generate(dataclasses.replace(CFG, n_events=5_000), CONTEXTS, seed=9, out=tmp_path, audio=False)
    small, big = digest(tmp_path), digest(out)
    for name in ("tracks.csv", "users.csv", "playlists.jsonl", "truth/user_taste.csv"):
        assert small[name] == big[name]
    days = [n for n in small if n.startswith("listening_logs/")]
    assert days and all(small[n] == big[n] for n in days)
    first = (out / "truth/event_contexts.csv").read_bytes().splitlines()[:5_001]
    assert first == (tmp_path / "truth/event_contexts.csv").read_bytes().splitlines()


def test_csv_writer_writes_what_pandas_wrote(tmp_path):
    """One chunk: the files are the bytes of the former pandas writer, from the same frame."""
    cfg = dataclasses.replace(CFG, n_events=4_000)
    world = generate(cfg, CONTEXTS, seed=3, out=tmp_path, audio=False)
    ev = world.events
    assert len(ev) == 4_000
    day = ev["_local"].dt.strftime("%Y-%m-%d")
    for d, part in ev.groupby(day):
        expected = part.drop(columns=["true_context", "_local"]).to_csv(index=False).encode()
        assert (tmp_path / f"listening_logs/{d}.csv").read_bytes() == expected, d
    expected = ev[["user_id", "track_id", "timestamp", "true_context"]].to_csv(index=False).encode()
    assert (tmp_path / "truth/event_contexts.csv").read_bytes() == expected


def test_timestamps_match_isoformat_across_dst_and_odd_offsets():
    spring = pd.date_range("2026-03-08 00:00", "2026-03-08 04:00", freq="17min")     # US spring forward
    spring_eu = pd.date_range("2026-03-29 00:00", "2026-03-29 04:00", freq="13min")
    fall = pd.date_range("2026-10-25 00:00", "2026-10-25 04:00", freq="11min")       # EU fall back
    local = spring.append(spring_eu).append(fall)
    for zone in (*TIMEZONES, "Asia/Kolkata", "Australia/Adelaide"):
        stamped = local.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").dropna()
        wall = stamped.tz_localize(None).asi8 // 10**9
        offset = (stamped.tz_localize(None).asi8 - stamped.asi8) // 10**9
        got = timestamps(wall, offset).to_pylist()
        assert got == [ts.isoformat() for ts in stamped], zone
    # offsets with seconds (local mean time) next to whole-minute ones
    old = pd.DatetimeIndex(["1900-06-01 12:00:00", "2020-06-01 12:00:00"]).tz_localize("Europe/Amsterdam")
    wall, utc = old.tz_localize(None).asi8 // 10**9, old.asi8 // 10**9
    assert timestamps(wall, wall - utc).to_pylist() == [ts.isoformat() for ts in old]
    assert timestamps(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).to_pylist() == []


def test_feedback_noise_is_fixed_per_pair_across_chunks():
    rng = np.random.default_rng(0)
    tracks, truth = catalogue.catalogue(CFG, CONTEXTS, rng)
    users = listeners.users(CFG, CONTEXTS, rng)
    fb = listeners.Feedback(tracks, users, CONTEXTS, seed=4)
    u, t = rng.integers(0, len(users), 3_000), rng.integers(0, len(tracks), 3_000)
    fb.draw(u, t, chunk=0)
    seen = u.astype(np.int64) * len(tracks) + t
    assert np.array_equal(fb.pair_noise(seen), fb._noise[np.searchsorted(fb._pairs, seen)])   # chunk 0's
    fresh = np.arange(10**6, 10**6 + 50_000, dtype=np.int64) * 7919
    noise = fb.pair_noise(fresh)
    assert np.array_equal(noise, listeners.Feedback(tracks, users, CONTEXTS, seed=4).pair_noise(fresh))
    assert not np.array_equal(noise, listeners.Feedback(tracks, users, CONTEXTS, seed=5).pair_noise(fresh))
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.35) < 0.01         # N(0, 0.35), as drawn
    z = listeners.hashed_normal(fresh, 1)
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01                           # normal, not uniform
    # later chunks: the same pair draws the same opinion, so repeated plays agree
    codes = [fb.draw(np.full(4_000, 7), np.full(4_000, 11), chunk=i) for i in (1, 2)]
    like = [np.mean(c == 1) for c in codes]
    assert abs(like[0] - like[1]) < 0.05


def test_distinct_draws_sample_without_replacement_like_numpy():
    w = np.arange(1, 31, dtype=float) ** -1.4
    w /= w.sum()
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    reps, k = 20_000, 10
    rng = np.random.default_rng(1)
    rows, values = catalogue._distinct(np.full(reps, k), lambda n: cdf.searchsorted(rng.random(n), side="right"), 30,
                                       fallback=lambda row, size: rng.choice(30, size, replace=False, p=w))
    assert np.array_equal(np.bincount(rows, minlength=reps), np.full(reps, k))
    assert (np.diff(rows) >= 0).all()
    assert len(np.unique(rows * 30 + values)) == reps * k                  # distinct within a row
    ref = np.random.default_rng(2)
    exact = np.concatenate([ref.choice(30, k, replace=False, p=w) for _ in range(reps)])
    assert np.abs(np.bincount(values, minlength=30) / reps - np.bincount(exact, minlength=30) / reps).max() < 0.02
    first = values[::k]                                                   # the first pick: proportional to w
    assert np.abs(np.bincount(first, minlength=30) / reps - w).max() < 0.01
    # excluded (row, value) pairs are never drawn
    ex_r, ex_v = np.arange(reps), np.zeros(reps, dtype=np.int64)
    rows, values = catalogue._distinct(np.full(reps, 3), lambda n: cdf.searchsorted(rng.random(n), side="right"), 30,
                                       exclude=(ex_r, ex_v))
    assert len(rows) == 3 * reps and not (values == 0).any()


def test_large_worlds_draw_playlists_at_scale(monkeypatch):
    cfg = dataclasses.replace(CFG, n_artists=60, n_users=50, n_context_playlists=600, n_noise_playlists=80,
                              n_filtered_playlists=20)
    monkeypatch.setattr(catalogue, "SCALE_ARTISTS", 10)
    assert catalogue.at_scale(cfg)

    def world(seed):
        rng = np.random.default_rng(seed)
        tracks, truth = catalogue.catalogue(cfg, CONTEXTS, rng)
        users = listeners.users(cfg, CONTEXTS, rng)
        return tracks, truth, catalogue.playlists(cfg, CONTEXTS, tracks, truth, users, rng)

    tracks, truth, playlists = world(0)
    assert playlists == world(0)[2] and playlists != world(1)[2]
    assert len(playlists) == 700 and [p["playlist_id"] for p in playlists] == [str(50_000_001 + i) for i in range(700)]
    albums = tracks.groupby("artist_id")["album_id"].nunique()
    assert albums.between(*cfg.albums_per_artist).all()
    assert tracks.groupby("album_id").size().between(*cfg.tracks_per_album).all()
    row = {t: i for i, t in enumerate(tracks["track_id"])}
    fit, mega, best = [], 0, 0
    for p in playlists:
        ids = [e["track_id"] for e in p["tracks"]]
        assert len(ids) == len(set(ids))                                  # no track twice
        if p["title"].endswith("mega mix"):
            mega += len(ids) > 100
        elif p["title"].startswith("best of ar"):
            artist = p["title"].split()[2]
            best += sum(e["artist_id"] == artist for e in p["tracks"]) / len(ids) > 0.5
        else:
            named = [j for j, c in enumerate(CONTEXTS) if p["title"] == c]   # plain "{k}" titles
            if named:
                fit.append(truth[[row[i] for i in ids], named[0]].mean())
    assert mega == 10 and best == 10
    assert np.mean(fit) > 0.8                      # tracks truly fit the titled context, strays aside


def test_demo_world_is_the_one_dvc_lock_records(tmp_path):
    """The demo world (params.yaml, no audio) is byte for byte what the committed dvc.lock hashes."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["synth"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    locked = lock["params"]["params.yaml"]
    if any(locked.get(k) != params.get(k) for k in ("seed", "contexts", "synth")):
        pytest.skip("dvc.lock is stale against params.yaml (run dvc repro synth)")
    p = load_params(ROOT / "params.yaml")
    generate(p.synth, p.contexts, p.seed, tmp_path, audio=False)
    md5 = {o["path"]: o["md5"] for o in lock["outs"]}

    def dir_md5(d: Path) -> str:      # DVC's .dir hash: md5 of the sorted JSON listing
        entries = sorted(({"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(d).as_posix()}
                          for f in d.rglob("*") if f.is_file()), key=lambda e: e["relpath"])
        return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"

    raw = params["paths"]["raw"]
    for name in ("tracks.csv", "users.csv", "playlists.jsonl"):
        assert hashlib.md5((tmp_path / name).read_bytes()).hexdigest() == md5[f"{raw}/{name}"], name
    assert dir_md5(tmp_path / "listening_logs") == md5[f"{raw}/listening_logs"]


def test_playlists_write_the_bytes_json_dumps_writes(tmp_path):
    tracks = pd.DataFrame({"track_id": ["1", "2", "3"], "artist_id": ["ar\"1", "ar2", "ar3"],
                           "album_id": ["al1", "al\\2", "al3"]})
    titles = ["plain", 'quote " and \\ backslash', "música 🎧", "tab\there", "empty"]
    owners = ["u1", "u2", "u1", "u3", "u2"]
    sizes = np.array([2, 3, 1, 2, 0])
    rows = np.array([0, 2, 2, 1, 0, 1, 0, 2], dtype=np.int32)
    pl = catalogue.Playlists(titles, owners, np.concatenate([[0], np.cumsum(sizes)]), rows, tracks)
    expected = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pl).encode()
    for batch in (2, 20_000):
        pl.write_jsonl(tmp_path / "p.jsonl", batch=batch)
        assert (tmp_path / "p.jsonl").read_bytes() == expected
    assert pl[1] == {"playlist_id": "50000002", "title": titles[1], "user_id": "u2",
                     "tracks": [{"track_id": t, "artist_id": a, "album_id": b}
                                for t, a, b in [("3", "ar3", "al3"), ("2", "ar2", "al\\2"), ("1", 'ar"1', "al1")]]}
    assert pl[-1]["tracks"] == [] and len(pl) == 5 and pl[1:3] == [pl[1], pl[2]]
    assert pl == list(pl) and pl != list(pl)[:4]
    # listed in another order: each playlist keeps its tracks
    again = catalogue.Playlists.from_sizes(titles, owners, sizes, rows, np.array([4, 2, 0, 3, 1]), tracks)
    assert [p["title"] for p in again] == [titles[k] for k in (4, 2, 0, 3, 1)]
    assert [p["tracks"] for p in again] == [pl[k]["tracks"] for k in (4, 2, 0, 3, 1)]
