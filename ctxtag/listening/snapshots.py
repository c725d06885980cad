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
from pathlib import Path

import pandas as pd
import pyarrow as pa

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


def _daily_sql(engine: Engine, v: Vocab) -> str:
    """Per (user, snapshot): the sums that the snapshot's features are shares of."""
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
              FROM events) e
        LEFT JOIN labels l ON e.track_id = l.track_id
        LEFT JOIN projection p ON e.track_id = p.track_id
        GROUP BY e.user_id, e.snap"""


def _running_sql(v: Vocab) -> str:
    cols = ["n", *(f"ctx{j}" for j in range(len(v.contexts))), *(f"dev{j}" for j in range(len(v.devices))),
            *(f"net{j}" for j in range(len(v.networks))), *(f"hour{h}" for h in range(24)),
            *(f"wday{w}" for w in range(7)), *(f"cyc{j}" for j in range(4)), *(f"emb{k}" for k in range(v.dim))]
    return f"""
        SELECT user_id, snap, {', '.join(f'sum({c}) OVER w AS {c}' for c in cols)}
        FROM daily
        WINDOW w AS (PARTITION BY user_id ORDER BY snap ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def _top_artists(engine: Engine, k: int = 3) -> None:
    """``top_artists``: per (user, snapshot) the k most-streamed artists by then (ties: by name).

    Day by day, vectorised over users: an artist not streamed on day D keeps its count, and the
    others' counts only grow, so if it was not in a user's top k before D it is not after. The
    top k at D is therefore the top k of (the top k before D) and (the artists streamed on D) —
    a few rows per user a day, where joining every artist to every snapshot grows with both.

    Of the artists streamed on D only that day's top k (by count so far) can be: if k of them beat
    an artist on D, they still do at D. So only those rows are kept (half of them in the
    benchmark's world)."""
    engine.materialize("artist_days", f"""
        SELECT user_id, artist_id, snap, cnt FROM (
          SELECT *, row_number() OVER (PARTITION BY user_id, snap ORDER BY cnt DESC, artist_id) AS day_rank FROM (
            SELECT user_id, artist_id, snap, sum(n) OVER (PARTITION BY user_id, artist_id ORDER BY snap
                                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cnt
            FROM (SELECT e.user_id, a.artist_id, date_trunc('day', e.event_timestamp) + INTERVAL 1 DAY AS snap,
                         count(*) AS n
                  FROM events e JOIN artists a ON e.track_id = a.track_id
                  GROUP BY e.user_id, a.artist_id, date_trunc('day', e.event_timestamp) + INTERVAL 1 DAY) x) y) z
        WHERE day_rank <= {k}
        ORDER BY snap""")
    engine.materialize("top_state", "SELECT user_id, artist_id, cnt FROM artist_days WHERE 1 = 0")
    engine.materialize("top_out", "SELECT user_id, snap, artist_id AS a1, artist_id AS a2, artist_id AS a3 "
                                  "FROM artist_days WHERE 1 = 0")
    snaps = [r[0] for r in engine.rows(f"SELECT DISTINCT {engine.dialect.stamp_text('snap')} FROM artist_days ORDER BY 1")]
    pick = ", ".join(f"max(CASE WHEN rk = {i} THEN artist_id END) AS a{i}" for i in range(1, k + 1))
    for snap in snaps:
        at = engine.dialect.instant(snap)
        engine.materialize("today", f"SELECT user_id, artist_id, cnt FROM artist_days WHERE snap = {at}")
        engine.materialize("ranked", f"""
            SELECT user_id, artist_id, cnt, rk FROM (
              SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY cnt DESC, artist_id) AS rk FROM (
                SELECT * FROM today
                UNION ALL
                SELECT t.* FROM top_state t
                WHERE EXISTS (SELECT 1 FROM today x WHERE x.user_id = t.user_id)
                  AND NOT EXISTS (SELECT 1 FROM today x WHERE x.user_id = t.user_id AND x.artist_id = t.artist_id)
              ) c) r
            WHERE rk <= {k}""")
        engine.append("top_out", f"SELECT user_id, {at} AS snap, {pick} FROM ranked GROUP BY user_id")
        engine.materialize("top_state", """
            SELECT * FROM top_state t WHERE NOT EXISTS (SELECT 1 FROM ranked r WHERE r.user_id = t.user_id)
            UNION ALL SELECT user_id, artist_id, cnt FROM ranked""")


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
            v: Vocab) -> None:
    labels = pd.DataFrame(track_labels.reindex(columns=list(v.contexts)).fillna(0).to_numpy(dtype="int64"),
                          columns=[f"l{j}" for j in range(len(v.contexts))])
    labels.insert(0, "track_id", track_labels.index.astype(str))
    engine.table("labels", pa.Table.from_pandas(labels, preserve_index=False))
    artists = track_artists.dropna()
    artists = artists[~artists.index.duplicated()]
    engine.table("artists", pa.table({"track_id": pa.array(artists.index.astype(str), pa.string()),
                                      "artist_id": pa.array(artists.astype(str).to_numpy(), pa.string())}))
    proj = item_projection.reindex(columns=[f"h{k}" for k in range(v.dim)]).astype("float64")
    proj.insert(0, "track_id", item_projection.index.astype(str))
    engine.table("projection", pa.Table.from_pandas(proj.reset_index(drop=True), preserve_index=False))


def _compute(engine: Engine, v: Vocab) -> None:
    engine.materialize("daily", _daily_sql(engine, v))
    engine.materialize("running", _running_sql(v))
    _top_artists(engine)


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
        _inputs(engine, track_labels, track_artists, item_projection, v)
        _compute(engine, v)
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
    _inputs(engine, track_labels, track_artists, item_projection, v)
    _compute(engine, v)
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
