"""The generated catalogue (artists, albums, tracks with a latent energy/valence) and the playlists
users build from it, titled after a context in many spellings, with noise and filter bait."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ctxtag.config import SynthConfig
from ctxtag.world.profiles import (
    CONTEXT_POPULARITY,
    NOISE_TITLES,
    TITLE_TEMPLATES,
    first_above,
    true_context_probability,
)

# worlds with more artists than this (the demo has 140) are drawn at scale: the album and track
# counts and every playlist draw made for all at once, in another order than one by one (same
# distributions, other draws); smaller ones are drawn one by one exactly as they always were, so
# the demo world and the tests' worlds keep their bytes
SCALE_ARTISTS = 400


def at_scale(cfg: SynthConfig) -> bool:
    return cfg.n_artists > SCALE_ARTISTS


def catalogue(cfg: SynthConfig, contexts: Sequence[str], rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    artist_centre = rng.uniform(0.05, 0.95, size=(cfg.n_artists, 2))
    if at_scale(cfg):
        n_albums = rng.integers(cfg.albums_per_artist[0], cfg.albums_per_artist[1] + 1, size=cfg.n_artists)
        album_artist = np.repeat(np.arange(cfg.n_artists), n_albums)
        n_tracks = rng.integers(cfg.tracks_per_album[0], cfg.tracks_per_album[1] + 1, size=len(album_artist))
        artist, album = np.repeat(album_artist, n_tracks), np.repeat(np.arange(1, len(album_artist) + 1), n_tracks)
    else:
        rows = []
        album_no = 0
        for a in range(cfg.n_artists):
            for _ in range(rng.integers(cfg.albums_per_artist[0], cfg.albums_per_artist[1] + 1)):
                album_no += 1
                for _ in range(rng.integers(cfg.tracks_per_album[0], cfg.tracks_per_album[1] + 1)):
                    rows.append((a, album_no))
        artist, album = np.array(rows).T
    n = len(artist)
    latent = np.clip(artist_centre[artist] + rng.normal(0, 0.12, size=(n, 2)), 0, 1)
    p = true_context_probability(latent[:, 0], latent[:, 1], contexts)
    truth = (rng.random(p.shape) < p).astype(np.uint8)
    empty = truth.sum(axis=1) == 0                      # every track fits somewhere
    truth[empty, np.argmax(p[empty], axis=1)] = 1
    popularity = rng.permutation(np.arange(1, n + 1) ** -cfg.popularity_alpha)
    tracks = pd.DataFrame({
        "track_id": (1_000_001 + np.arange(n)).astype(str),
        "artist_id": [f"ar{a:04d}" for a in artist],
        "album_id": [f"al{b:05d}" for b in album],
        "title": [f"Track {i}" for i in range(n)],
        "energy": latent[:, 0], "valence": latent[:, 1], "popularity": popularity / popularity.sum(),
    })
    return tracks, truth


def make_title(ctx: str, other: str, rng: np.random.Generator) -> tuple[str, bool]:
    """A title naming ``ctx`` (and ``other`` when the template has two keywords)."""
    tpl = TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))]
    title = tpl.format(k=ctx, K=ctx.upper(), Kc=ctx.capitalize(), k2=other, K2c=other.capitalize(),
                       year=int(rng.integers(2015, 2027)))
    return title, "2" in tpl


class Playlists(Sequence[dict]):
    """Playlists as columns: each one's title, owner, and tracks (rows of the catalogue, playlist i's
    between offsets[i] and offsets[i + 1]). Playlist i reads as the dict {"playlist_id", "title",
    "user_id", "tracks": [{"track_id", "artist_id", "album_id"}, ...]} (built when asked for, the
    track entries shared), so a million playlists hold an int per entry rather than a dict list,
    and write_jsonl encodes them in bulk."""

    FIRST_ID = 50_000_001

    def __init__(self, titles: list[str], owners: list[str], offsets: np.ndarray, rows: np.ndarray,
                 tracks: pd.DataFrame):
        if not len(titles) == len(owners) == len(offsets) - 1 or offsets[-1] != len(rows):
            raise ValueError("titles, owners and offsets disagree on the number of playlists")
        self.titles, self.owners, self.offsets, self.rows = titles, owners, offsets, rows
        self._ids = [tracks[c].to_numpy(dtype=object).tolist() for c in ("track_id", "artist_id", "album_id")]
        self._entries: list[dict] | None = None

    @classmethod
    def from_sizes(cls, titles: list[str], owners: list[str], sizes: np.ndarray, rows: np.ndarray,
                   order: np.ndarray, tracks: pd.DataFrame, block: int = 100_000) -> Playlists:
        """Playlists whose tracks are ``rows`` in turn (playlist i has sizes[i]), listed in ``order``."""
        starts = np.cumsum(sizes) - sizes
        offsets = np.concatenate([[0], np.cumsum(sizes[order])]).astype(np.int64)
        listed = np.empty_like(rows)
        for b in range(0, len(order), block):         # the gather in blocks: no index array per entry
            sel = order[b:b + block]
            n = sizes[sel]
            at = np.repeat(starts[sel] - (np.cumsum(n) - n), n) + np.arange(n.sum())
            listed[offsets[b]:offsets[b + len(sel)]] = rows[at]
        return cls([titles[k] for k in order.tolist()], [owners[k] for k in order.tolist()], offsets, listed, tracks)

    @property
    def entries(self) -> list[dict]:
        """A playlist entry per catalogue track, shared by the playlists it is in."""
        if self._entries is None:
            self._entries = [{"track_id": t, "artist_id": a, "album_id": b} for t, a, b in zip(*self._ids, strict=True)]
        return self._entries

    def __len__(self) -> int:
        return len(self.titles)

    def _one(self, i: int) -> dict:
        entries = self.entries
        a, b = self.offsets[i], self.offsets[i + 1]
        return {"playlist_id": str(self.FIRST_ID + i), "title": self.titles[i], "user_id": self.owners[i],
                "tracks": [entries[r] for r in self.rows[a:b].tolist()]}

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._one(k) for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._one(i)

    def __iter__(self) -> Iterator[dict]:
        return (self._one(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def write_jsonl(self, path: Path, batch: int = 20_000) -> None:
        """One JSON object per line, byte for byte ``json.dumps(playlist, ensure_ascii=False)``:
        each track entry, title and owner encoded once, the lines joined by arrow in batches."""
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        entry = pa.array([f'{{"track_id": {dumps(t)}, "artist_id": {dumps(a)}, "album_id": {dumps(b)}}}'
                          for t, a, b in zip(*self._ids, strict=True)], type=pa.string())
        title = {t: dumps(t) for t in set(self.titles)}
        owner = {u: dumps(u) for u in set(self.owners)}
        with Path(path).open("wb") as fh:
            for start in range(0, len(self), batch):
                stop = min(len(self), start + batch)
                head = pa.array([f'{{"playlist_id": "{self.FIRST_ID + i}", "title": {title[t]}, "user_id": {owner[u]}, "tracks": ['
                                 for i, t, u in zip(range(start, stop), self.titles[start:stop],
                                                    self.owners[start:stop], strict=True)], type=pa.string())
                lo, hi = int(self.offsets[start]), int(self.offsets[stop])
                lists = pa.ListArray.from_arrays(pa.array(self.offsets[start:stop + 1] - lo, type=pa.int32()),
                                                 entry.take(pa.array(self.rows[lo:hi])))
                lines = pc.binary_join_element_wise(head, pc.binary_join(lists, ", "), "]}\n", "")
                ends = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
                fh.write(memoryview(lines.buffers()[2])[ends[0]:ends[-1]])


class _Picker:
    """``rng.choice(n, size=min(k, (w > 0).sum()), replace=False, p=w / w.sum())`` for the few
    weight vectors the playlists use, each cdf computed once and kept only where it rises (a
    search in it finds the same track as in the full one: a zero weight adds exactly nothing).
    numpy draws in rounds: uniforms searched in the cdf, the first sight of each track kept, then
    the tracks found zeroed and the cdf recomputed for the rest; so does this, on the same floats,
    so it picks the same tracks from the same draws."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self._cache: dict[object, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def pick(self, key: object, weights: Callable[[], np.ndarray], k: int) -> np.ndarray:
        if key not in self._cache:
            w = weights()
            w = w / w.sum()
            cdf = w.cumsum()
            cdf /= cdf[-1]
            rises = np.flatnonzero(w > 0)
            self._cache[key] = (rises, w[rises], cdf[rises])
        rises, p, cdf = self._cache[key]
        size = min(k, len(rises))
        found = np.empty(size, dtype=np.int64)          # positions in ``rises``
        n_uniq = 0
        while n_uniq < size:
            x = self.rng.random(size - n_uniq)
            if n_uniq:
                rest = p.copy()
                rest[found[:n_uniq]] = 0
                cdf = rest.cumsum()
                cdf /= cdf[-1]
            new = cdf.searchsorted(x, side="right")
            _, first = np.unique(new, return_index=True)
            new = new[np.sort(first)]
            found[n_uniq:n_uniq + len(new)] = new
            n_uniq += len(new)
        return rises[found]

    def uniform_except(self, chosen: np.ndarray, k: int) -> np.ndarray:
        """``k`` tracks drawn uniformly without replacement among those not in ``chosen``."""
        w = ~np.isin(np.arange(self.n), chosen) * 1.0
        w = w / w.sum()
        return self.rng.choice(self.n, size=min(k, int((w > 0).sum())), replace=False, p=w)


def playlists(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
              users: pd.DataFrame, rng: np.random.Generator) -> Playlists:
    # one by one, each pick costs O(tracks): a world 1000x the demo would take hours
    if at_scale(cfg):
        return _playlists_at_scale(cfg, contexts, tracks, truth, users, rng)
    n = len(tracks)
    pop = tracks["popularity"].to_numpy()
    ctx_p = np.array([CONTEXT_POPULARITY[c] for c in contexts])
    prefs = np.stack(users["_prefs"].to_numpy())
    user_ids = users["user_id"].to_numpy()
    picker = _Picker(n, rng)
    fits_of = [truth[:, j].astype(bool) for j in range(len(contexts))]
    n_both: dict[tuple[int, int], int] = {}
    any_fit = [bool(f.any()) for f in fits_of]
    out: list[tuple[str, str, np.ndarray]] = []      # (title, owner, tracks)

    for _ in range(cfg.n_context_playlists):
        u = rng.integers(len(users))
        w = prefs[u] * ctx_p
        c = rng.choice(len(contexts), p=w / w.sum())
        # some titles name a second context ("chill & relax"): then the tracks fit both
        c2 = rng.choice(len(contexts), p=w / w.sum())
        title, two = make_title(contexts[c], contexts[c2], rng)
        key: tuple[int, ...] = (int(c),)
        if two:
            if (c, c2) not in n_both:
                n_both[c, c2] = int((fits_of[c] & fits_of[c2]).sum())
            if n_both[c, c2] >= cfg.playlist_len[0]:
                key = (int(c), int(c2))
        size = int(rng.integers(cfg.playlist_len[0], cfg.playlist_len[1] + 1))
        n_stray = rng.binomial(size, cfg.stray_track_share)
        if (n_both[c, c2] if len(key) == 2 else any_fit[c]) > 0:
            chosen = picker.pick(key, lambda key=key: pop * np.logical_and.reduce([fits_of[j] for j in key]),
                                 size - n_stray)
        else:
            chosen = np.array([], dtype=int)
        stray = picker.uniform_except(chosen, n_stray)   # strays: any track, uniformly
        idx = rng.permutation(np.concatenate([chosen, stray]))
        out.append((title, user_ids[u], idx))

    for _ in range(cfg.n_noise_playlists):
        u = rng.integers(len(users))
        size = int(rng.integers(cfg.playlist_len[0], cfg.playlist_len[1] + 1))
        out.append((NOISE_TITLES[rng.integers(len(NOISE_TITLES))], user_ids[u], picker.pick("pop", lambda: pop, size)))

    artists = tracks["artist_id"].to_numpy()
    # each artist's tracks, as np.nonzero(artists == a) finds them (in track order)
    by_artist = np.argsort(artists, kind="stable")
    artist_keys = artists[by_artist]
    for j in range(cfg.n_filtered_playlists):
        u = rng.integers(len(users))
        c = contexts[rng.integers(len(contexts))]
        if j % 2 == 0:   # too long: a "mega mix" of more than 100 tracks
            idx = picker.pick("pop", lambda: pop, min(n, int(rng.integers(101, 160))))
            title = f"{c} mega mix"
        else:            # one artist dominates: "best of <artist> for the gym"
            a = artists[rng.integers(n)]
            own = by_artist[artist_keys.searchsorted(a, side="left"):artist_keys.searchsorted(a, side="right")]
            idx = rng.permutation(np.concatenate([own, picker.pick("pop", lambda: pop, max(1, len(own) // 2))]))
            title = f"best of {a} for {c}"
        out.append((title, user_ids[u], np.unique(idx)))

    order = rng.permutation(len(out))
    picked = [out[k] for k in order]
    sizes = [len(t) for _, _, t in picked]
    return Playlists([t for t, _, _ in picked], [u for _, u, _ in picked],
                     np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                     np.concatenate([np.empty(0, dtype=np.int64), *(t for _, _, t in picked)]).astype(np.int64), tracks)


def _distinct(need: np.ndarray, draw: Callable[[int], np.ndarray], n_values: int,
              exclude: tuple[np.ndarray, np.ndarray] | None = None,
              fallback: Callable[[int, int], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every row r, ``need[r]`` distinct values: the first distinct ones of the i.i.d. stream
    ``draw`` (sampling without replacement, each pick proportional to its weight among those
    left), skipping the (row, value) pairs in ``exclude``. Vectorised over rows: each round
    draws more than the rows still need, keeps first sights, and gives the rows still short
    another, larger round; ``fallback(row, k)`` draws the rare rows still short at the end.
    Returns (rows, values), grouped by row, in draw order within a row."""
    empty = np.empty(0, dtype=np.int64)
    ex_r, ex_v = exclude if exclude is not None else (empty, empty)
    done_r, done_v = [empty], [empty]
    cur_r, cur_v = empty, empty                 # kept so far, rows still short
    pending = np.flatnonzero(need > 0)
    factor = 1.5
    for _ in range(10):
        if not len(pending):
            break
        short = need[pending] - np.bincount(cur_r, minlength=len(need))[pending]
        new_r = np.repeat(pending, np.ceil(short * factor).astype(np.int64) + 2)
        live = np.zeros(len(need), dtype=bool)
        live[pending] = True
        ex = live[ex_r]
        rows = np.concatenate([ex_r[ex], cur_r, new_r])
        values = np.concatenate([ex_v[ex], cur_v, draw(len(new_r))])
        _, first = np.unique(rows * n_values + values, return_index=True)   # stable: first sight
        first = np.sort(first[first >= ex.sum()])          # never an excluded pair; draw order
        first = first[np.argsort(rows[first], kind="stable")]
        rows, values = rows[first], values[first]
        counts = np.bincount(rows, minlength=len(need))
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < need[rows]
        rows, values = rows[keep], values[keep]
        full = np.bincount(rows, minlength=len(need)) >= need       # (after the cut)
        done_r.append(rows[full[rows]])
        done_v.append(values[full[rows]])
        cur_r, cur_v = rows[~full[rows]], values[~full[rows]]
        pending = pending[~full[pending]]
        factor *= 2
    if len(pending) and fallback is None:
        raise RuntimeError(f"{len(pending)} rows still short of distinct values after 10 rounds")
    for r in pending:                                  # rare: drawn again, whole, the slow way
        done_r.append(np.full(need[r], r, dtype=np.int64))
        done_v.append(fallback(int(r), int(need[r])))
    rows, values = np.concatenate(done_r), np.concatenate(done_v)
    order = np.argsort(rows, kind="stable")
    return rows[order], values[order]


def _playlists_at_scale(cfg: SynthConfig, contexts: Sequence[str], tracks: pd.DataFrame, truth: np.ndarray,
                        users: pd.DataFrame, rng: np.random.Generator, block: int = 100_000) -> Playlists:
    """The playlists of ``playlists``, every draw made for ``block`` playlists at once (which
    bounds the memory of the draws, not the number of playlists)."""
    n, m = len(tracks), len(contexts)
    pop = tracks["popularity"].to_numpy()
    user_ids = users["user_id"].to_numpy()
    lo, hi = cfg.playlist_len
    by_pop = np.argsort(-pop, kind="stable")
    cdfs: dict[object, tuple[np.ndarray, np.ndarray]] = {}
    sizes: list[np.ndarray] = []           # tracks per playlist, in turn
    values: list[np.ndarray] = []          # their tracks, playlist after playlist
    titles: list[str] = []
    owners: list[np.ndarray] = []

    def picks(rows: np.ndarray, k: np.ndarray, key: object, weights: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """k[i] tracks without replacement, popularity-weighted, for playlist rows[i]."""
        if key not in cdfs:      # most popular first: most searches end in the cached top of the cdf
            w = weights()
            rises = by_pop[w[by_pop] > 0]
            cdf = w[rises].cumsum()
            cdfs[key] = (rises.astype(np.int32 if n < 2**31 else np.int64), cdf / cdf[-1])
        rises, cdf = cdfs[key]

        def exact(row: int, size: int) -> np.ndarray:
            p = np.diff(cdf, prepend=0.0)
            return rng.choice(rises, size=size, replace=False, p=p / p.sum())

        r, v = _distinct(np.minimum(k, len(rises)), lambda size: rises[cdf.searchsorted(rng.random(size), side="right")],
                         n, fallback=exact)
        return rows[r], v

    def blocks(total: int) -> Iterator[np.ndarray]:
        for start in range(0, total, block):
            yield np.arange(start, min(total, start + block))

    def keep(n_rows: int, rows: np.ndarray, tracks_of: np.ndarray) -> None:
        """A block's (playlist, track) pairs, sorted by its playlists 0 .. n_rows - 1."""
        sizes.append(np.bincount(rows, minlength=n_rows))
        values.append(tracks_of.astype(np.int32 if n < 2**31 else np.int64))

    # context playlists: the user's taste picks the context (and a second one)
    N = cfg.n_context_playlists
    u = rng.integers(len(users), size=N)
    taste = np.stack(users["_prefs"].to_numpy()) * np.array([CONTEXT_POPULARITY[c] for c in contexts])
    cum_t = np.ascontiguousarray((taste / taste.sum(1, keepdims=True)).cumsum(axis=1).T)
    c, c2 = first_above(cum_t, u, rng.random(N)), first_above(cum_t, u, rng.random(N))
    tpl, year = rng.integers(len(TITLE_TEMPLATES), size=N), rng.integers(2015, 2027, size=N)
    size = rng.integers(lo, hi + 1, size=N)
    n_stray = rng.binomial(size, cfg.stray_track_share)
    both = np.stack([(truth & truth[:, [j]]).sum(axis=0) for j in range(m)])       # (m, m) counts
    two = np.array(["2" in t for t in TITLE_TEMPLATES])[tpl] & (both[c, c2] >= lo)
    key = c * m + np.where(two, c2, c)                  # tracks that fit c (and c2)
    for rows in blocks(N):
        local = rows - rows[0]
        got_r, got_v = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
        by_key = local[np.argsort(key[rows], kind="stable")]
        keys, starts = np.unique(key[rows][by_key], return_index=True)
        for kk, same in zip(keys.tolist(), np.split(by_key, starts[1:]), strict=True):
            a, b = divmod(kk, m)
            if both[a, b]:
                r, v = picks(same, (size - n_stray)[rows[same]], ("ctx", a, b),
                             lambda a=a, b=b: pop * (truth[:, a] & truth[:, b]))
                got_r.append(r)
                got_v.append(v)
        chosen_r, chosen_v = np.concatenate(got_r), np.concatenate(got_v)
        # strays: any track, uniformly, not already in the playlist
        stray_r, stray_v = _distinct(
            np.minimum(n_stray[rows], n - np.bincount(chosen_r, minlength=len(rows))),
            lambda k: rng.integers(0, n, size=k), n, exclude=(chosen_r, chosen_v),
            fallback=lambda row, k, cr=chosen_r, cv=chosen_v: rng.choice(np.setdiff1d(np.arange(n), cv[cr == row]),
                                                                         size=k, replace=False))
        at = np.concatenate([chosen_r, stray_r])
        order = np.lexsort((rng.random(len(at)), at))   # each playlist shuffled
        keep(len(rows), at[order], np.concatenate([chosen_v, stray_v])[order])
    titles += [TITLE_TEMPLATES[t].format(k=contexts[a], K=contexts[a].upper(), Kc=contexts[a].capitalize(),
                                         k2=contexts[b], K2c=contexts[b].capitalize(), year=y)
               for t, a, b, y in zip(tpl.tolist(), c.tolist(), c2.tolist(), year.tolist(), strict=True)]
    owners.append(u)

    # noise playlists: titles without a context, popular tracks
    N2 = cfg.n_noise_playlists
    u2 = rng.integers(len(users), size=N2)
    size2 = rng.integers(lo, hi + 1, size=N2)
    title2 = rng.integers(len(NOISE_TITLES), size=N2)
    for rows in blocks(N2):
        keep(len(rows), *picks(rows - rows[0], size2[rows], "pop", lambda: pop))
    titles += [NOISE_TITLES[t] for t in title2.tolist()]
    owners.append(u2)

    # filter bait: over-long "mega mix"es (even j) and single-artist "best of"s (odd j)
    N3 = cfg.n_filtered_playlists
    u3, c3 = rng.integers(len(users), size=N3), rng.integers(m, size=N3)
    mega = np.arange(N3) % 2 == 0
    artist_code, artist_names = pd.factorize(tracks["artist_id"].to_numpy())
    by_artist = np.argsort(artist_code, kind="stable")
    first_of = np.concatenate([[0], np.cumsum(np.bincount(artist_code))])
    who = artist_code[rng.integers(n, size=N3)]
    n_own = np.where(mega, 0, first_of[who + 1] - first_of[who])
    k3 = np.where(mega, np.minimum(n, rng.integers(101, 160, size=N3)), np.maximum(1, n_own // 2))
    for rows in blocks(N3):
        own = n_own[rows]
        own_r = np.repeat(rows - rows[0], own)
        own_v = by_artist[np.repeat(first_of[who[rows]] - np.cumsum(own) + own, own) + np.arange(own.sum())]
        r, v = picks(rows - rows[0], k3[rows], "pop", lambda: pop)
        uniq = np.unique(np.concatenate([own_r, r]) * n + np.concatenate([own_v, v]))   # once each, sorted
        keep(len(rows), uniq // n, uniq % n)
    titles += [f"{contexts[c]} mega mix" if big else f"best of {artist_names[a]} for {contexts[c]}"
               for c, big, a in zip(c3.tolist(), mega.tolist(), who.tolist(), strict=True)]
    owners.append(u3)

    return Playlists.from_sizes(titles, user_ids[np.concatenate(owners)].tolist(), np.concatenate(sizes),
                                np.concatenate(values), rng.permutation(len(titles)), tracks)
