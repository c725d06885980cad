"""`ctxtag label` at Million Playlist Dataset scale: a generated input, and the stage timed on it.

Target (issue 13): 1M playlists / 66M entries labelled in <= 2 min and <= 6 GB peak RSS on the
2-core, 24 GB dev machine.

The input is generated here, reproducibly (``--seed``) and vectorised (Arrow string kernels, no
Python loop over entries):

- a catalogue of ``--tracks`` tracks (2M by default; MPD has 2.26M) on albums and artists (MPD:
  734k albums, 296k artists), with Spotify-style URIs as ids;
- playlists of 5..250 tracks, ~66 on average (MPD: 66.3), drawn popularity-skewed (Zipf) from
  the catalogue; context playlists draw half their tracks from a per-context pool, so tracks do
  collect the >= 3 context playlists a label needs; a few playlists are dominated by one artist
  (the filters drop them);
- titles: real playlist titles from ``../shared/data/playlist_titles`` (when present) mixed with
  the synthetic world's templates and noise titles;
- a little dirt (``--dirty``, per playlist): a repeated track, an entry without an artist, an
  unknown track, an empty playlist, a blank title — the quarantine has something to hold.

Formats (``--format``): ``mpd`` writes Million Playlist Dataset slices, exactly as Spotify ships
them (``mpd.slice.<a>-<b>.json``, 1000 playlists a file, every field, indented): what a real user
has at this scale. ``jsonl`` writes the project's own JSON-lines schema in part files of 10,000
playlists (as an export job writes them). ``--lean`` drops the fields the labelling does not read
(names, durations): a smaller file to read, the same labels.

Usage: python benchmarks/bench_label.py [--playlists 10000 100000 1000000] [--format mpd jsonl]
[--code DIR ...]. Each size is generated into a temp dir (removed after; ``--keep DIR`` keeps it
and reuses what is there), then ``ctxtag label`` runs on it in a child process, once per
``--code`` tree (whose ``ctxtag`` package it imports; default: this checkout), back to back: on a
shared machine only such side-by-side figures compare (a copy of the tree before a change, and
this one). Disk: 1M playlists take ~30 GB as MPD slices, ~10 GB as JSON lines (plus ~0.2 GB of
tracks.csv). One table row per run: wall seconds, entries/s, CPU seconds (user + system, workers
included), peak memory (PSS summed over the stage's processes: forked workers share the
catalogue) and the largest single process's RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
TITLES_TSV = ROOT.parent / "shared/data/playlist_titles/deezer_playlist_titles.tsv"
ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
CONTEXTS = ("car", "chill", "club", "dance", "gym", "happy", "night", "party", "relax", "running",
            "sad", "sleep", "summer", "work", "workout")
MPD_SLICE = 1000          # playlists per MPD slice, as Spotify ships them
JSONL_PART = 10_000       # playlists per JSON-lines part file


# --- the catalogue ---------------------------------------------------------------------------------

def _base62(rng: np.random.Generator, n: int, prefix: str) -> pa.Array:
    """n random 22-character base62 ids behind ``prefix`` (Spotify URIs: spotify:track:<22>)."""
    raw = ALPHABET[rng.integers(0, 62, size=(n, 22), dtype=np.uint8)]
    ids = pa.array(raw.view("S22").ravel(), type=pa.binary()).cast(pa.string())
    return pc.binary_join_element_wise(prefix, ids, "")


class Catalogue:
    """Tracks on albums on artists; ids as Spotify URIs; popularity as a Zipf CDF."""

    def __init__(self, n_tracks: int, rng: np.random.Generator, alpha: float = 1.0):
        n_albums, n_artists = max(1, n_tracks * 734 // 2262), max(1, n_tracks * 296 // 2262)
        self.n = n_tracks
        # tracks sorted by album, albums by artist: an artist's tracks are one contiguous range
        self.album = np.sort(rng.integers(0, n_albums, n_tracks)).astype(np.int32)
        album_artist = np.sort(rng.integers(0, n_artists, n_albums)).astype(np.int32)
        self.artist = album_artist[self.album]
        starts = np.searchsorted(self.artist, np.arange(n_artists))
        self.artist_start = starts[self.artist]
        self.artist_size = np.diff(np.append(starts, n_tracks))[self.artist]
        self.track_uri = _base62(rng, n_tracks, "spotify:track:")
        self.album_uri = _base62(rng, n_albums, "spotify:album:")
        self.artist_uri = _base62(rng, n_artists, "spotify:artist:")
        idx = pa.array(np.arange(n_tracks)).cast(pa.string())
        self.track_name = pc.binary_join_element_wise("Song ", idx, "")
        self.album_name = pc.binary_join_element_wise("Album ", pa.array(np.arange(n_albums)).cast(pa.string()), "")
        self.artist_name = pc.binary_join_element_wise("Artist ", pa.array(np.arange(n_artists)).cast(pa.string()), "")
        self.duration = rng.integers(90_000, 420_000, n_tracks)
        # MPD's most common track is in ~4.6 % of playlists: a Zipf law with a flattened head
        weight = 1.0 / (np.arange(n_tracks) + 150.0) ** alpha
        weight = weight[rng.permutation(n_tracks)]              # popularity unrelated to id order
        self.cdf = np.cumsum(weight / weight.sum())
        # per-context pools: the tracks that fit a context (a tenth of the catalogue each)
        pool = max(1, n_tracks // 10)
        self.pools = np.stack([np.sort(rng.choice(n_tracks, pool, replace=False)) for _ in CONTEXTS])
        pw = weight[self.pools]
        self.pool_cdf = np.cumsum(pw / pw.sum(axis=1, keepdims=True), axis=1)
        self.fragments: dict[str, pa.Array] = {}

    def popular(self, rng: np.random.Generator, k: int) -> np.ndarray:
        # sorted draws search the CDF in one cache-friendly sweep; a permutation puts them in random order
        found = np.minimum(np.searchsorted(self.cdf, np.sort(rng.random(k))), self.n - 1)
        return found[rng.permutation(k)]

    def write_csv(self, path: Path) -> None:
        """tracks.csv as the label stage reads it (track_id, artist_id, album_id, ...)."""
        import pyarrow.csv as pacsv

        table = pa.table({"track_id": self.track_uri,
                          "artist_id": self.artist_uri.take(pa.array(self.artist)),
                          "album_id": self.album_uri.take(pa.array(self.album)),
                          "title": self.track_name})
        pacsv.write_csv(table, path)


# --- titles -------------------------------------------------------------------------------------------

def title_pool(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """(distinct titles, their sampling weights): real titles where present, synthetic ones too."""
    from ctxtag.world.profiles import NOISE_TITLES, TITLE_TEMPLATES

    synthetic = []
    for c in CONTEXTS:
        for tpl in TITLE_TEMPLATES:
            c2 = CONTEXTS[(CONTEXTS.index(c) + 3) % len(CONTEXTS)]
            synthetic.append(tpl.format(k=c, K=c.upper(), Kc=c.capitalize(), k2=c2, K2c=c2.capitalize(),
                                        year=2026))
    noise = list(NOISE_TITLES) + [f"playlist {i}" for i in range(2000)] + [f"mix #{i}" for i in range(2000)]
    titles, weights = synthetic + noise, [0.25 / len(synthetic)] * len(synthetic) + [0.35 / len(noise)] * len(noise)
    if TITLES_TSV.exists():
        real = []
        with TITLES_TSV.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                real.append(row["title"])
        titles += real
        weights += [0.4 / len(real)] * len(real)
    else:
        print(f"note: {TITLES_TSV} absent: synthetic titles only", file=sys.stderr)
    w = np.asarray(weights)
    return titles, w / w.sum()


# --- playlists ----------------------------------------------------------------------------------------

def playlist_block(cat: Catalogue, titles: list[str], title_w: np.ndarray, title_ctx: np.ndarray,
                   n: int, rng: np.random.Generator, dirty: float) -> dict:
    """n playlists as flat arrays: lengths, title index, entry track index (-1: unknown track),
    entry artist missing, per-playlist blank title."""
    lengths = np.clip(np.round(rng.lognormal(3.98, 0.7, n)), 5, 250).astype(np.int64)
    t = rng.choice(len(titles), n, p=title_w)
    owner = np.repeat(np.arange(n), lengths)
    tracks = cat.popular(rng, len(owner))
    # context playlists: half their tracks from the context's pool
    ctx = title_ctx[t][owner]
    from_pool = (ctx >= 0) & (rng.random(len(owner)) < 0.5)
    c = ctx[from_pool]
    u = rng.random(len(c))
    picked = np.empty(len(c), dtype=np.int64)
    for j in range(len(CONTEXTS)):                         # 15 contexts, not a loop over entries
        at = np.flatnonzero(c == j)
        order = np.argsort(u[at])
        found = np.minimum(np.searchsorted(cat.pool_cdf[j], u[at][order]), cat.pools.shape[1] - 1)
        picked[at[order]] = cat.pools[j][found]
    tracks[from_pool] = picked
    # a few playlists dominated by one artist (the filters drop them)
    fan = rng.random(n) < 0.03
    fav = rng.integers(0, cat.n, n)
    swap = fan[owner] & (rng.random(len(owner)) < 0.6)
    f = fav[owner[swap]]
    tracks[swap] = cat.artist_start[f] + rng.integers(0, 1 << 30, swap.sum()) % cat.artist_size[f]
    # one track once per playlist (the dirt below adds repeats on purpose)
    key = owner * cat.n + tracks
    order = np.argsort(key, kind="stable")
    first = np.ones(len(key), bool)
    first[order[1:]] = key[order[1:]] != key[order[:-1]]
    owner, tracks = owner[first], tracks[first]
    lengths = np.bincount(owner, minlength=n)
    blank_title = np.zeros(n, bool)
    no_artist = np.zeros(len(tracks), bool)
    if dirty > 0:
        k = max(1, int(round(dirty * n)))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # a repeated track: the playlist's first track again at its end
        rep = rng.choice(n, k, replace=False)
        ins = starts[rep] + lengths[rep]
        owner = np.insert(owner, ins, rep)
        tracks = np.insert(tracks, ins, tracks[starts[rep]])
        no_artist = np.insert(no_artist, ins, False)
        lengths[rep] += 1
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        long = np.flatnonzero(lengths >= 3)
        no_artist[starts[rng.choice(long, k)] + 1] = True                     # an entry without artist
        tracks[starts[rng.choice(long, k)] + 2] = -1                          # a track not in the catalogue
        blank_title[rng.choice(n, k, replace=False)] = True                   # a blank title
        empty = rng.choice(n, k, replace=False)                               # an empty playlist
        keep = ~np.isin(owner, empty)
        owner, tracks, no_artist = owner[keep], tracks[keep], no_artist[keep]
        lengths[empty] = 0
    return {"lengths": lengths, "title": t, "tracks": tracks, "no_artist": no_artist, "blank_title": blank_title}


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _json_str(values: pa.Array) -> pa.Array:
    """Arrow strings as JSON string literals (the ids and names here need no escaping)."""
    return pc.binary_join_element_wise('"', values, '"', "")


# an MPD track object: {"pos": <n>, <the track's fields>}, indented as json.dumps(indent=4) nests it
_POS = " " * 16 + "{\n" + " " * 20 + '"pos": '


def _fragment_fields(cat: Catalogue, style: str, idx: np.ndarray, track_uri: pa.Array | None = None,
                     no_artist: np.ndarray | None = None) -> list:
    """(key, JSON literal array) of the tracks ``idx`` for an entry of ``style``."""
    album, artist = pa.array(cat.album[idx]), pa.array(cat.artist[idx])
    track_uri = cat.track_uri.take(pa.array(idx)) if track_uri is None else track_uri
    artist_uri = _json_str(cat.artist_uri.take(artist))
    if no_artist is not None:
        artist_uri = pc.if_else(pa.array(no_artist), pa.scalar("null"), artist_uri)
    ids = [("track_uri", _json_str(track_uri)), ("artist_uri", artist_uri),
           ("album_uri", _json_str(cat.album_uri.take(album)))]
    if style == "jsonl":
        return [("track_id", ids[0][1]), ("artist_id", ids[1][1]), ("album_id", ids[2][1])]
    if style == "mpd-lean":
        return ids
    return [("artist_name", _json_str(cat.artist_name.take(artist))), *ids,
            ("track_name", _json_str(cat.track_name.take(pa.array(idx)))),
            ("album_name", _json_str(cat.album_name.take(album))),
            ("duration_ms", pa.array(cat.duration[idx]).cast(pa.string()))]


def _fragments(cat: Catalogue, style: str, fields: list) -> pa.Array:
    """Entry text from its fields: the whole object, or (full MPD) all of it after "pos"."""
    if style == "jsonl":
        return _objects(fields, "")
    if style == "mpd-lean":
        return _objects(fields, " " * 16)
    inner = " " * 20
    parts = []
    for k, v in fields:
        parts += [f',\n{inner}"{k}": ', v]
    return pc.binary_join_element_wise(*parts, "\n" + " " * 16 + "}", "")


def _entries(cat: Catalogue, block: dict, style: str) -> pa.Array:
    """Every entry's JSON text: each track's text is built once per catalogue and taken; only the
    dirty entries (an unknown track, no artist) are built here, and MPD's "pos" is put in front."""
    if style not in cat.fragments:
        cat.fragments[style] = _array(_fragments(cat, style, _fragment_fields(cat, style, np.arange(cat.n))))
    tracks = block["tracks"]
    known = tracks >= 0
    safe = np.where(known, tracks, 0)
    text = _array(cat.fragments[style].take(pa.array(safe)))
    dirt = np.flatnonzero(~known | block["no_artist"])
    if len(dirt):
        uri = pc.if_else(pa.array(known[dirt]), cat.track_uri.take(pa.array(safe[dirt])),
                         pc.binary_join_element_wise("spotify:track:unknown", pa.array(dirt).cast(pa.string()), ""))
        fixed = _array(_fragments(cat, style, _fragment_fields(cat, style, safe[dirt], uri, block["no_artist"][dirt])))
        mask = np.zeros(len(tracks), dtype=bool)
        mask[dirt] = True
        text = pc.replace_with_mask(text, pa.array(mask), fixed)
    if style != "mpd":
        return text
    starts = np.concatenate([[0], np.cumsum(block["lengths"])[:-1]])
    pos = np.arange(len(tracks)) - np.repeat(starts, block["lengths"])
    return pc.binary_join_element_wise(_POS, pa.array(pos).cast(pa.string()), text, "")


def _objects(fields: list, indent: str) -> pa.Array:
    """One JSON object per row from (key, JSON-literal array) pairs; indented like json.dumps(indent=4)."""
    if indent:
        inner = indent + "    "
        parts = [indent + "{\n"]
        for i, (k, v) in enumerate(fields):
            parts += [f'{inner}"{k}": ', v, ",\n" if i < len(fields) - 1 else "\n"]
        parts.append(indent + "}")
    else:
        parts = ["{"]
        for i, (k, v) in enumerate(fields):
            parts += [f'"{k}": ', v, ", " if i < len(fields) - 1 else "}"]
    # binary_join_element_wise takes scalars and arrays alike, the last argument the separator
    return pc.binary_join_element_wise(*parts, "")


def _join_lists(values: pa.Array, lengths: np.ndarray, sep: str) -> pa.Array:
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    if isinstance(values, pa.ChunkedArray):
        values = values.cast(pa.large_string()).combine_chunks()
    return pc.binary_join(pa.LargeListArray.from_arrays(offsets, values.cast(pa.large_string())),
                          pa.scalar(sep, pa.large_string())).cast(pa.string())


def write_block(out: Path, fmt: str, cat: Catalogue, titles_json: np.ndarray, block: dict, first_pid: int,
                rng: np.random.Generator, lean: bool) -> None:
    n = len(block["lengths"])
    pids = np.arange(first_pid, first_pid + n)
    title = titles_json[block["title"]]
    title[block["blank_title"]] = '""'
    title = pa.array(title, type=pa.string())
    pretty = fmt == "mpd"
    entries = _entries(cat, block, "jsonl" if fmt == "jsonl" else "mpd-lean" if lean else "mpd")
    tracks = _join_lists(entries, block["lengths"], ",\n" if pretty else ", ")
    empty = block["lengths"] == 0
    if pretty:
        tracks = pc.if_else(pa.array(empty), pa.scalar("[]"),
                            pc.binary_join_element_wise("[\n", tracks, "\n" + " " * 12 + "]", ""))
    else:
        tracks = pc.binary_join_element_wise("[", tracks, "]", "")
    pid_s = pa.array(pids).cast(pa.string())
    if fmt == "mpd":
        head = [("name", title), ("collaborative", pa.scalar('"false"'))] + [("pid", pid_s)]
        if not lean:
            head += [("modified_at", pa.array(1_500_000_000 + rng.integers(0, 10**7, n)).cast(pa.string())),
                     ("num_tracks", pa.array(block["lengths"]).cast(pa.string())),
                     ("num_followers", pa.array(1 + rng.poisson(1.5, n)).cast(pa.string()))]
        plist = _objects(head + [("tracks", tracks)], " " * 8)
        for s in range(0, n, MPD_SLICE):
            a, b = first_pid + s, first_pid + min(s + MPD_SLICE, n) - 1
            body = pc.binary_join(pa.LargeListArray.from_arrays(pa.array([0, min(MPD_SLICE, n - s)], pa.int64()),
                                  plist[s:s + MPD_SLICE].cast(pa.large_string())),
                                 pa.scalar(",\n", pa.large_string()))
            info = json.dumps({"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{a}-{b}", "version": "v1"},
                              indent=4).replace("\n", "\n    ")
            with (out / f"mpd.slice.{a}-{b}.json").open("wb") as fh:
                fh.write(f'{{\n    "info": {info},\n    "playlists": [\n'.encode())
                fh.write(body[0].as_buffer())
                fh.write(b"\n    ]\n}\n")
    else:
        lines = _objects([("playlist_id", _json_str(pid_s)), ("title", title),
                          ("tracks", tracks)], "")
        for s in range(0, n, JSONL_PART):
            part = lines[s:s + JSONL_PART]
            with (out / f"part-{(first_pid + s) // JSONL_PART:05d}.jsonl").open("wb") as fh:
                body = pc.binary_join(pa.LargeListArray.from_arrays(pa.array([0, len(part)], pa.int64()),
                                      part.cast(pa.large_string())),
                                      pa.scalar("\n", pa.large_string()))
                fh.write(body[0].as_buffer())
                fh.write(b"\n")


def generate(out: Path, n_playlists: int, fmt: str = "mpd", seed: int = 0, n_tracks: int = 2_000_000,
             dirty: float = 1e-3, lean: bool = False, catalogue: bool = True) -> dict:
    """Write ``n_playlists`` playlists under ``out/playlists`` (and ``out/tracks.csv``)."""
    from ctxtag.labelling.matcher import match_many

    rng = np.random.default_rng(seed)
    (out / "playlists").mkdir(parents=True, exist_ok=True)
    cat = Catalogue(n_tracks, rng)
    if catalogue:
        cat.write_csv(out / "tracks.csv")
    titles, title_w = title_pool(rng)
    found = match_many(titles, CONTEXTS)
    title_ctx = np.array([CONTEXTS.index(sorted(f)[0]) if f else -1 for f in found])
    titles_json = np.array([json.dumps(t, ensure_ascii=False) for t in titles], dtype=object)
    step = 20 * MPD_SLICE
    entries = 0
    for start in range(0, n_playlists, step):
        n = min(step, n_playlists - start)
        block = playlist_block(cat, titles, title_w, title_ctx, n, rng, dirty)
        entries += int(block["lengths"].sum())
        write_block(out / "playlists", fmt, cat, titles_json, block, start, rng, lean)
    size = sum(f.stat().st_size for f in (out / "playlists").iterdir())
    return {"playlists": n_playlists, "entries": entries, "bytes": size}


# --- the benchmark ------------------------------------------------------------------------------------

def run_label(work: Path, params_yaml: Path = ROOT / "params.yaml", catalogue: bool = True
              ) -> tuple[float, float, int, int]:
    """``ctxtag label`` on ``work`` in a child process: (wall seconds, CPU seconds of it and its
    workers (user + system: on a shared machine the wall time says how busy the others were), peak
    memory of the child and its workers together (sum of PSS, sampled every 0.2 s), the largest
    single process's peak RSS)."""
    import yaml

    params = yaml.safe_load(Path(params_yaml).read_text())
    params["paths"]["playlists"] = "playlists"
    params["paths"]["tracks"] = "tracks.csv" if catalogue else "no-catalogue.csv"
    params["paths"]["truth"] = "no-truth"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from ctxtag.cli import main; sys.exit(main())",
                             "label"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_sum = 0
    try:
        import psutil
    except ImportError:                                     # then only the largest single process
        psutil = None
    while psutil is not None and proc.poll() is None:
        total = 0
        try:
            procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:           # PSS: pages the forked workers share with the parent counted once
            with contextlib.suppress(psutil.Error):
                total += p.memory_full_info().pss
        peak_sum = max(peak_sum, total)
        time.sleep(0.2)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    single, cpu = usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"ctxtag label failed:\n{out[-2000:]}\n{err[-4000:]}")
    return seconds, cpu, max(peak_sum, single), single


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--playlists", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--format", nargs="+", choices=["mpd", "jsonl"], default=["mpd"])
    ap.add_argument("--tracks", type=int, default=2_000_000, help="catalogue size")
    ap.add_argument("--dirty", type=float, default=1e-3, help="share of playlists given each kind of bad row")
    ap.add_argument("--lean", action="store_true", help="ids only: no names, durations (smaller files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="generate into this dir and keep it (else a temp dir)")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--no-catalogue", action="store_true",
                    help="label without tracks.csv (as with the real MPD, which has none): no unknown-track check")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params.yaml to label with")
    ap.add_argument("--code", type=Path, nargs="+", default=[ROOT],
                    help="trees holding the ctxtag package to label with, each in turn (default: this checkout)")
    args = ap.parse_args(argv)

    rows = []
    header = f"{'code':<10} {'format':<6} {'playlists':>10} {'entries':>12} {'input':>9} {'gen s':>7} {'label s':>8} " \
             f"{'entries/s':>11} {'cpu s':>7} {'peak RSS':>9} {'1 proc':>8}"
    print(header, flush=True)
    for fmt in args.format:
        for n in args.playlists:
            base = args.keep / f"{fmt}-{n}" if args.keep else Path(tempfile.mkdtemp(prefix="bench_label_"))
            try:
                if base.exists() and (base / "generated.json").exists():
                    info = json.loads((base / "generated.json").read_text())
                    gen = 0.0
                else:
                    base.mkdir(parents=True, exist_ok=True)
                    t0 = time.perf_counter()
                    info = generate(base, n, fmt, args.seed, args.tracks, args.dirty, args.lean)
                    gen = time.perf_counter() - t0
                    (base / "generated.json").write_text(json.dumps(info))
                for code in [None] if args.generate_only else args.code:
                    if code is None:
                        seconds, cpu, peak, single = float("nan"), float("nan"), 0, 0
                    else:
                        seconds, cpu, peak, single = run_label_isolated(base, args.params, not args.no_catalogue, code)
                    row = (f"{code.name if code else '-':<10.10} {fmt:<6} {info['playlists']:>10,} {info['entries']:>12,} "
                           f"{info['bytes'] / 2**30:>7.2f}GB {gen:>7.1f} {seconds:>8.1f} {info['entries'] / seconds:>11,.0f} "
                           f"{cpu:>7.1f} {peak / 2**30:>7.2f}GB {single / 2**30:>6.2f}GB")
                    rows.append(row)
                    print(row, flush=True)
            finally:
                if not args.keep:
                    shutil.rmtree(base, ignore_errors=True)
    return 0


def run_label_isolated(work: Path, params_yaml: Path, catalogue: bool, code: Path = ROOT
                       ) -> tuple[float, float, int, int]:
    """Each run from its own process, so the largest single peak (RUSAGE_CHILDREN: the max over
    all children ever waited for) is that run's alone; ``code``: the tree whose ctxtag it runs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])}
    script = ("import sys, json, pathlib; sys.path.insert(0, sys.argv[1]); from bench_label import run_label; "
              "print(json.dumps(run_label(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4] == '1')))")
    proc = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(work), str(params_yaml),
                           "1" if catalogue else "0"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main())
