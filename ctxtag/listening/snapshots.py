"""User features from the listening-log lake, as daily point-in-time snapshots for Feast.

A snapshot stamped D+1 00:00 UTC aggregates every event *before* that instant, so a training row
at time t joins (Feast's point-in-time join: latest snapshot <= t) only history it could have
known. It is SQL on the data-plane engine (ctxtag.listening.engine: DuckDB out of core on one
machine, Spark beyond it): per (user, day) sums, then running sums per user.

- history: streams, and per context the count and share of streams whose track carries the
  context (observed track labels; an event's own context label counts too), top 3 artists, and
  the history embedding (ctxtag.listening.history_embedding: SVD fold-in of the listening shares).
- device/time profile: device and network shares, local hour-of-day (24) and weekday (7)
  distributions, and circular means of hour and weekday as sin/cos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ctxtag.common.io import atomic_path
from ctxtag.config import DataPlaneConfig
from ctxtag.listening.engine import Engine, open_engine

CYCLIC = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")


@dataclass(frozen=True)
class Vocab:
    contexts: Sequence[str]
    devices: Sequence[str]
    networks: Sequence[str]
    dim: int                            # history embedding size (projection columns h0..h{dim-1})


def _daily_sql(engine: Engine, v: Vocab, where: str = "") -> str:
    """Per (user, snapshot): the sums that the snapshot's features are shares of (of the events
    ``where`` holds)."""
    d = engine.dialect

    def count_if(cond: str, name: str) -> str:
        # count(), not sum(): a BIGINT on both engines (DuckDB sums integers into a 128-bit
        # HUGEINT, and its running sums over ~90 such columns cost ~20 % more)
        return f"count(CASE WHEN {cond} THEN 1 END) AS {name}"

    sums = [
        *(count_if(f"l.l{j} > 0 OR e.context = {d.lit(c)}", f"ctx{j}")    # labels are 0/1; an explicit label counts
          for j, c in enumerate(v.contexts)),
        *(count_if(f"e.device = {d.lit(x)}", f"dev{j}") for j, x in enumerate(v.devices)),
        *(count_if(f"e.network = {d.lit(x)}", f"net{j}") for j, x in enumerate(v.networks)),
        *(count_if(f"e.lh = {h}", f"hour{h}") for h in range(24)),
        *(count_if(f"e.lw = {w}", f"wday{w}") for w in range(7)),
        "sum(sin(2 * pi() * e.lh / 24)) AS cyc0", "sum(cos(2 * pi() * e.lh / 24)) AS cyc1",
        "sum(sin(2 * pi() * e.lw / 7)) AS cyc2", "sum(cos(2 * pi() * e.lw / 7)) AS cyc3",
        *(f"sum(CAST(coalesce(p.h{k}, 0) AS DOUBLE)) AS emb{k}" for k in range(v.dim)),
    ]
    local = d.plus_minutes("event_timestamp", "coalesce(utc_offset_min, 0)")
    return f"""
        SELECT e.user_id, e.snap, count(*) AS n, {', '.join(sums)}
        FROM (SELECT user_id, track_id, device, network, context,
                     date_trunc('day', event_timestamp) + INTERVAL 1 DAY AS snap,
                     hour({local}) AS lh, {d.weekday(local)} AS lw
              FROM events {f"WHERE {where}" if where else ""}) e
        LEFT JOIN labels l ON e.track_id = l.track_id
        LEFT JOIN projection p ON e.track_id = p.track_id
        GROUP BY e.user_id, e.snap"""


def _counts(v: Vocab) -> list[str]:
    return ["n", *(f"ctx{j}" for j in range(len(v.contexts))), *(f"dev{j}" for j in range(len(v.devices))),
            *(f"net{j}" for j in range(len(v.networks))), *(f"hour{h}" for h in range(24)),
            *(f"wday{w}" for w in range(7))]


def _sums(v: Vocab) -> list[str]:
    return [*(f"cyc{j}" for j in range(4)), *(f"emb{k}" for k in range(v.dim))]


def _running_sql(v: Vocab) -> str:
    """The floating sums of ``daily`` running per user, as a window: their bits depend on the order
    of additions, which the engines' windows share (a NumPy pass's would differ in ~1 value of 1M
    after rounding to FLOAT). Nothing else goes through it: DuckDB's window costs ~0.2 s per
    million rows for each column it computes, and about as much for each one it only carries."""
    return f"""
        SELECT user_id, snap, {', '.join(f'sum({c}) OVER w AS {c}' for c in _sums(v))}
        FROM daily
        WINDOW w AS (PARTITION BY user_id ORDER BY snap ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def _counts_sql(v: Vocab) -> str:
    """The counts of ``daily`` beside the running floating sums: ``_running`` adds the counts up
    (exact in any order), so the window carries none of them."""
    return f"""
        SELECT d.user_id, d.snap, {', '.join(f'd.{c}' for c in _counts(v))}, {', '.join(f's.{c}' for c in _sums(v))}
        FROM daily d JOIN sums s ON d.user_id = s.user_id AND d.snap = s.snap"""


def _runs(key: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins, in an array sorted by it."""
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)


def _ids(col: pa.ChunkedArray) -> np.ndarray:
    """0, 1, ... numbering the runs of equal values of a sorted column."""
    codes = pc.dictionary_encode(col.combine_chunks()).indices.to_numpy(zero_copy_only=False)
    return codes.astype(np.int64)       # sorted input: a new value is a new code, in order


def _running_per_run(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running sums of integer ``x``, restarting at ``starts`` (exact: integers)."""
    y = x.astype(np.int64)              # a copy; at each run's start, take back the run before
    y[starts[1:]] -= np.add.reduceat(x, starts)[:-1] if len(starts) > 1 else 0
    return np.cumsum(y, out=y)


def _running(table: pa.Table, counts: Sequence[str]) -> pa.Table:
    """``running``: the counts of ``_running_sql``'s rows (whole users, by snapshot) summed up,
    a column at a time (one contiguous array each)."""
    starts = _runs(_ids(table.column("user_id")))
    for c in counts:
        x = table.column(c).to_numpy().astype(np.int64)
        table = table.set_column(table.schema.get_field_index(c), c, pa.array(_running_per_run(x, starts)))
    return table


def _by(*keys: np.ndarray) -> np.ndarray:
    """The stable order of the rows by integer ``keys``: one sort of the keys packed into an int64
    when they fit in one (np.lexsort took ~5x as long)."""
    lo = [int(k.min()) if len(k) else 0 for k in keys]
    span = [int(k.max()) - m + 1 if len(k) else 1 for k, m in zip(keys, lo, strict=True)]
    if np.prod([float(x) for x in span]) >= 2.0 ** 62:
        return np.lexsort(keys[::-1])
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    for k, m, w in zip(keys, lo, span, strict=True):
        packed = packed * w + (k - m)
    return np.argsort(packed, kind="stable")


def _top_k(table: pa.Table, names: pa.Array, k: int = 3) -> pa.Table:
    """``top_out``: per (user, snapshot) the k most-streamed artists by then (ties: by name), from
    the (user, snapshot, artist code, streams that day) rows of whole users.

    Day by day, vectorised over users: an artist not streamed on day D keeps its count, and the
    others' counts only grow, so if it was not in a user's top k before D it is not after. The
    top k at D is therefore the top k of (the top k before D) and (the artists streamed on D).
    Of those streamed on D only that day's top k (by count so far) can be: if k of them beat an
    artist on D, they still do at D. The codes number the artists in name order, so ties break
    on the code. A (user, snapshot) without any artist's stream has no row."""
    u = _ids(table.column("user_id"))
    s = table.column("snap").cast(pa.int64()).to_numpy()
    a = table.column("code").to_numpy().astype(np.int64)
    n = table.column("n").to_numpy().astype(np.int64)
    # the rows come by (user, day): a stable sort by (user, artist) lines up each pair's days
    pair = u * (len(names) + 1) + a
    row = np.argsort(pair, kind="stable")
    cnt = np.empty_like(n)
    cnt[row] = _running_per_run(n[row], _runs(pair[row]))      # each (user, artist)'s count so far
    day = np.cumsum(np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])]) - 1 if len(u) else u
    row = _by(day, -cnt, a)                                     # each (user, day): its artists, best first
    cnt, u, s, a = cnt[row], u[row], s[row], a[row]
    day = np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])] if len(u) else np.zeros(0, dtype=bool)
    first = np.flatnonzero(day)
    g = np.cumsum(day) - 1                              # the row's (user, day)
    rank = np.arange(len(u)) - first[g]
    keep = rank < k
    codes = np.full((len(first), k), -1, dtype=np.int64)        # that day's top k (-1: none)
    counts = np.full((len(first), k), -1, dtype=np.int64)
    codes[g[keep], rank[keep]] = a[keep]
    counts[g[keep], rank[keep]] = cnt[keep]
    gu = u[first]                                       # each (user, day)'s user, and the day's place
    starts = _runs(gu)
    pos = np.arange(len(gu)) - np.repeat(starts, np.diff(np.r_[starts, len(gu)]))
    state_codes = np.full((int(gu.max()) + 1 if len(gu) else 0, k), -1, dtype=np.int64)
    state_counts = np.full_like(state_codes, -1)
    by_pos = np.argsort(pos, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(pos))] if len(pos) else np.zeros(1, dtype=np.int64)
    for p in range(len(bounds) - 1):                    # the users' p-th days, all at once
        idx = by_pos[bounds[p]:bounds[p + 1]]
        users = gu[idx]
        tc, tn = codes[idx], counts[idx]
        sc, sn = state_codes[users], state_counts[users]
        seen = (sc[:, :, None] == tc[:, None, :]).any(axis=2)   # streamed today: today's count holds
        mc = np.hstack([tc, np.where(seen, -1, sc)])
        mn = np.hstack([tn, np.where(seen, -1, sn)])
        best = np.lexsort((mc, -mn), axis=-1)[:, :k]            # most streams, then name; none last
        codes[idx] = state_codes[users] = np.take_along_axis(mc, best, axis=1)
        counts[idx] = state_counts[users] = np.take_along_axis(mn, best, axis=1)
    at = pa.array(row[first])
    out = {"user_id": table.column("user_id").take(at), "snap": table.column("snap").take(at)}
    for i in range(k):
        out[f"a{i + 1}"] = names.take(pa.array(codes[:, i], mask=codes[:, i] < 0))
    return pa.table(out)


def _top_artists(engine: Engine, names: pa.Array) -> None:
    """``top_out`` (``_top_k``) from each (user, day, artist)'s streams."""
    snap = "date_trunc('day', e.event_timestamp) + INTERVAL 1 DAY"
    sql = f"""SELECT e.user_id, {snap} AS snap, a.artist_code AS code, count(*) AS n
              FROM events e JOIN artists a ON e.track_id = a.track_id
              GROUP BY e.user_id, {snap}, a.artist_code"""
    schema = pa.schema([("user_id", pa.string()), ("snap", pa.timestamp("us", tz="UTC")),
                        *((f"a{i}", pa.string()) for i in (1, 2, 3))])
    engine.map_groups("top_out", sql, "user_id", ["snap"], partial(_top_k, names=names), schema)


def _history_sql(engine: Engine, v: Vocab) -> str:
    d = engine.dialect
    share = [f"CAST(ctx{j} AS BIGINT) AS ctx_count_{c}, CAST(ctx{j} / n AS FLOAT) AS ctx_share_{c}"
             for j, c in enumerate(v.contexts)]
    emb = d.array([f"CAST(emb{k} / n AS FLOAT)" for k in range(v.dim)])
    return f"""
        SELECT r.user_id, r.snap AS event_timestamp, CAST(r.n AS BIGINT) AS n_streams, {', '.join(share)},
               {d.compact(['t.a1', 't.a2', 't.a3'])} AS top_artists, {emb} AS history_embedding
        FROM running r LEFT JOIN top_out t ON r.user_id = t.user_id AND r.snap = t.snap
        ORDER BY r.user_id, r.snap"""


def _device_time_sql(engine: Engine, v: Vocab) -> str:
    d = engine.dialect
    cols = [*(f"CAST(dev{j} / n AS FLOAT) AS device_share_{x}" for j, x in enumerate(v.devices)),
            *(f"CAST(net{j} / n AS FLOAT) AS network_share_{x}" for j, x in enumerate(v.networks)),
            f"{d.array([f'CAST(hour{h} / n AS FLOAT)' for h in range(24)])} AS hour_dist",
            f"{d.array([f'CAST(wday{w} / n AS FLOAT)' for w in range(7)])} AS weekday_dist",
            *(f"CAST(cyc{j} / n AS FLOAT) AS {name}" for j, name in enumerate(CYCLIC))]
    return f"SELECT user_id, snap AS event_timestamp, {', '.join(cols)} FROM running ORDER BY user_id, snap"


def _inputs(engine: Engine, track_labels: pd.DataFrame, track_artists: pd.Series, item_projection: pd.DataFrame,
            v: Vocab) -> pa.Array:
    """The tables the snapshots read; returns the artists' names, whose order their codes number."""
    # the SQL asks only l{j} > 0: one byte a label, not eight (millions of tracks, held while the engine runs)
    labels = track_labels.reindex(columns=list(v.contexts)).fillna(0)
    engine.table("labels", pa.table({"track_id": pa.array(track_labels.index.astype(str), pa.string()),
                                     **{f"l{j}": pa.array(labels[c].to_numpy(dtype="int64") > 0).cast(pa.int8())
                                        for j, c in enumerate(v.contexts)}}))
    del labels
    artists = track_artists.dropna()
    artists = artists[~artists.index.duplicated()]
    names, codes = np.unique(artists.astype(str).to_numpy(dtype=object), return_inverse=True)  # code point order:
    engine.table("artists", pa.table({"track_id": pa.array(artists.index.astype(str), pa.string()),  # both engines'
                                      "artist_code": pa.array(codes.astype(np.int64))}))            # string order
    proj = item_projection.reindex(columns=[f"h{k}" for k in range(v.dim)])
    # the fit's float32 stays so (half the join's memory): the SQL widens it to DOUBLE, exactly
    proj = proj.astype(np.float32 if (proj.dtypes == np.float32).all() else np.float64)
    proj.insert(0, "track_id", item_projection.index.astype(str))
    engine.table("projection", pa.Table.from_pandas(proj.reset_index(drop=True), preserve_index=False))
    return pa.array(names, pa.string())


EVENTS_PER_PASS = 12_000_000            # ~6 events a (user, day), ~1 KB of sums each: ~2 GB a pass


def _materialize_daily(engine: Engine, v: Vocab) -> None:
    """``daily``, a few UTC days at a time: a snapshot is one UTC day, so the passes share no
    group. At 100M events the ~16M groups' sums (~1 KB each) were spilled to disk and read back,
    the slowest step; a pass's fit in memory. The lake is partitioned by UTC date, so a pass reads
    its days' files only (the filter meets their statistics)."""
    d = engine.dialect
    days = engine.rows(f"SELECT {d.day_text('snap')}, n FROM (SELECT date_trunc('day', event_timestamp) AS snap, "
                       "count(*) AS n FROM events GROUP BY date_trunc('day', event_timestamp)) t ORDER BY snap")
    starts, size = [], 0                # the first day of each pass after the first
    for day, n in days:
        if size and size + n > EVENTS_PER_PASS:
            starts.append(day)
            size = 0
        size += n
    # each pass from its first day to the next pass's: together, every instant once
    bounds = [None, *(d.instant(f"{day} 00:00:00") for day in starts), None]
    for i, (lo, hi) in enumerate(pairwise(bounds)):
        where = " AND ".join([*([f"event_timestamp >= {lo}"] if lo else []), *([f"event_timestamp < {hi}"] if hi else [])])
        engine.append("daily", _daily_sql(engine, v, where), fresh=i == 0)


def _compute(engine: Engine, v: Vocab, names: pa.Array) -> None:
    _materialize_daily(engine, v)
    sums = pa.schema([("user_id", pa.string()), ("snap", pa.timestamp("us", tz="UTC")),
                      *((c, pa.int64()) for c in _counts(v)), *((c, pa.float64()) for c in _sums(v))])
    engine.materialize("sums", _running_sql(v))
    engine.map_groups("running", _counts_sql(v), "user_id", ["snap"], partial(_running, counts=_counts(v)), sums)
    _top_artists(engine, names)


def daily_snapshots(events: pd.DataFrame, track_labels: pd.DataFrame, track_artists: pd.Series,
                    contexts: Sequence[str], devices: Sequence[str], networks: Sequence[str],
                    item_projection: pd.DataFrame, engine: Engine | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, device_time) frames keyed by user_id and event_timestamp (snapshot time), from
    events in a frame: for small worlds and tests. ``snapshot_files`` runs the same SQL over the
    lake and writes parquet, in bounded memory."""
    own = engine is None
    engine = engine or open_engine(DataPlaneConfig(memory_limit="1GB"))
    try:
        v = Vocab(contexts, devices, networks, item_projection.shape[1])
        ev = events[["user_id", "track_id", "event_timestamp", "utc_offset_min", "device", "network", "context"]]
        engine.table("events", pa.Table.from_pandas(ev.reset_index(drop=True), preserve_index=False))
        _compute(engine, v, _inputs(engine, track_labels, track_artists, item_projection, v))
        history = _frame(engine.arrow(_history_sql(engine, v)))
        device_time = _frame(engine.arrow(_device_time_sql(engine, v)))
        return history, device_time
    finally:
        if own:
            engine.close()


def snapshot_files(engine: Engine, lake_parts: Sequence[Path], track_labels: pd.DataFrame,
                   track_artists: pd.Series, contexts: Sequence[str], devices: Sequence[str],
                   networks: Sequence[str], item_projection: pd.DataFrame, history_path: Path,
                   device_time_path: Path) -> dict:
    """The snapshots of every event in the lake, written to two parquet files (atomically) by the
    engine: nothing grows with the events in Python's memory."""
    v = Vocab(contexts, devices, networks, item_projection.shape[1])
    engine.parquet("events", lake_parts)
    _compute(engine, v, _inputs(engine, track_labels, track_artists, item_projection, v))
    for sql, path in ((_history_sql(engine, v), history_path), (_device_time_sql(engine, v), device_time_path)):
        with atomic_path(Path(path)) as tmp:
            engine.write(sql, tmp)
    (rows, users) = engine.rows("SELECT count(*), count(DISTINCT user_id) FROM running")[0]
    return {"snapshots": int(rows), "users": int(users)}


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    for col in ("top_artists", "history_embedding", "hour_dist", "weekday_dist"):
        if col in frame:
            frame[col] = [list(x) if col == "top_artists" else x for x in frame[col]]
    return frame
