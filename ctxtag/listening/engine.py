"""The engines that run the listening-data plane: DuckDB on one machine, Spark beyond it.

Every transformation of the plane (the log rules, the lake's de-duplication, the daily user
snapshots) is written once, as SQL, in ctxtag.listening. The two dialects agree on nearly all of
it; where they differ (regular expressions, timestamps, arrays) the SQL calls a macro of
``Dialect`` instead, so one text runs on both. (sqlglot's DuckDB -> Spark transpilation was tried
first: it silently dropped the ORDER BY of an ordered list aggregate and mapped ISO weekdays to the
wrong days, so the differences are spelled out here, where a test can hold them.)

- ``DuckDB``: the embedded default. Out of core: it spills to ``temp_dir`` past ``memory_limit``,
  reads and writes parquet itself, and runs on every core; no JVM, no server.
- ``Spark``: pyspark, ``local[*]`` in tests and on a laptop, any cluster through ``master`` (or
  ``spark-submit``, which sets it). The same SQL against temporary views.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ctxtag.common.io import process_alive
from ctxtag.config import DataPlaneConfig


@dataclass(frozen=True)
class Dialect:
    """What the two SQL dialects spell differently, as macros returning SQL text."""

    name: str

    def lit(self, text: str) -> str:
        """A string literal. Spark unescapes backslashes in literals; DuckDB, like standard SQL, does not."""
        if self.name == "spark":
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + text.replace("'", "''") + "'"

    def instant(self, utc: str) -> str:
        """A UTC instant literal from 'YYYY-MM-DD HH:MM:SS[.ffffff]' text."""
        if self.name == "spark":                        # the session's time zone is UTC
            return f"TIMESTAMP {self.lit(utc)}"
        return f"TIMESTAMPTZ {self.lit(utc + '+00:00')}"

    def plus_minutes(self, ts: str, minutes: str) -> str:
        if self.name == "spark":
            return f"timestampadd(MINUTE, {minutes}, {ts})"
        return f"({ts} + to_minutes(CAST({minutes} AS BIGINT)))"

    def weekday(self, ts: str) -> str:
        """Monday 0 .. Sunday 6, as pandas' ``dt.weekday``."""
        return f"weekday({ts})" if self.name == "spark" else f"(isodow({ts}) - 1)"

    def stamp_text(self, ts: str) -> str:
        """'YYYY-MM-DD HH:MM:SS' in UTC: instants cross into Python as text, never as naive datetimes."""
        return f"date_format({ts}, 'yyyy-MM-dd HH:mm:ss')" if self.name == "spark" else f"strftime({ts}, '%Y-%m-%d %H:%M:%S')"

    def day_text(self, ts: str) -> str:
        """'YYYY-MM-DD' of the UTC day (DuckDB: a cast, ~1.4x cheaper than strftime; the session is UTC)."""
        return f"date_format({ts}, 'yyyy-MM-dd')" if self.name == "spark" else f"CAST(CAST({ts} AS DATE) AS VARCHAR)"

    def array(self, items: Sequence[str]) -> str:
        return f"{'array' if self.name == 'spark' else 'list_value'}({', '.join(items)})"

    def compact(self, items: Sequence[str]) -> str:
        """The array of ``items`` without its NULLs, in order."""
        if self.name == "spark":
            return f"filter({self.array(items)}, x -> x IS NOT NULL)"
        return f"list_filter({self.array(items)}, lambda x: x IS NOT NULL)"


def _microseconds(table: pa.Table) -> pa.Table:
    """Timestamps at microseconds, as both engines and parquet hold them (pandas has nanoseconds)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns":
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("us", tz=f.type.tz)))
    return table


def _files(paths: Sequence[str | Path]) -> list[str]:
    return [str(p) for p in paths]


GroupPass = Callable[[pa.Table], pa.Table]
GROUP_ROWS = 1 << 20                    # rows a group pass sees at once (whole keys) ...
GROUP_BYTES = 64 << 20                  # ... or fewer where they are wide: 1M rows of ``running``'s
                                        # ~95 columns were ~0.8 GB at once, several times over
READ_ROWS = 1 << 16                     # rows of a batch streamed out of DuckDB


def whole_groups(batches: Iterable[pa.RecordBatch], key: str, rows: int,
                 nbytes: int = GROUP_BYTES) -> Iterator[pa.Table]:
    """Tables of at least ``rows`` rows or ``nbytes`` bytes (but the last) cut from ``batches``
    sorted by ``key``, never inside a run of one key: a pass over them sees every row of a key at
    once, in bounded memory."""
    pending: list[pa.RecordBatch] = []
    size = held = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            size += batch.num_rows
            held += batch.nbytes
        if size < rows and held < nbytes:
            continue
        table = pa.Table.from_batches(pending)
        col = table.column(key)
        cut = pc.index(pc.equal(col, col[-1]), True).as_py()       # where the last key's run begins
        if cut <= 0:                                                # one key longer than a chunk: read on
            continue
        yield table.slice(0, cut)
        pending = table.slice(cut).to_batches()
        size = table.num_rows - cut
        held = sum(b.nbytes for b in pending)
    if size:
        yield pa.Table.from_batches(pending)


def _map_batches(batches: Iterable[pa.RecordBatch], key: str, fn: GroupPass, rows: int) -> Iterator[pa.RecordBatch]:
    for table in whole_groups(batches, key, rows):
        yield from fn(table).to_batches()


SPILL_PREFIX = "ctxtag-duckdb-"


def _sweep_spill_dirs() -> None:
    """Spill folders of engines whose process is gone (killed before ``close``): they can be
    gigabytes, and nothing else would remove them. A folder names its process."""
    for old in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*-*"):
        pid = old.name[len(SPILL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(pid):
            shutil.rmtree(old, ignore_errors=True)


class DuckDB:
    """The embedded engine: one in-process DuckDB connection, spilling to ``temp_dir``."""

    dialect = Dialect("duckdb")

    def __init__(self, memory_limit: str = "4GB", threads: int | None = None, temp_dir: Path | None = None):
        import duckdb

        self._own_temp = temp_dir is None
        if temp_dir is None:
            _sweep_spill_dirs()
        self.temp_dir = Path(temp_dir or tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-"))
        self.con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(self.temp_dir),
                                          # output order is always stated with ORDER BY; not keeping
                                          # insertion order lets big queries stream in less memory
                                          "preserve_insertion_order": False,
                                          **({"threads": threads} if threads else {})})
        self.con.execute("SET TimeZone = 'UTC'")
        self._passes: dict[str, Path] = {}             # map_groups' output files, by table name

    def table(self, name: str, data: Any) -> None:
        """A pandas frame or Arrow table as a view (no copy but for nanosecond timestamps)."""
        self.con.register(name, _microseconds(data if isinstance(data, pa.Table)
                                              else pa.Table.from_pandas(data, preserve_index=False)))

    def parquet(self, name: str, paths: Sequence[str | Path]) -> None:
        files = _files(paths)
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet({files!r}, union_by_name = true)")

    def materialize(self, name: str, sql: str) -> None:
        """Compute ``sql`` once into a table the following statements read."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def append(self, name: str, sql: str, fresh: bool = False) -> None:
        """Add the rows of ``sql`` to table ``name`` (``fresh``: replace it); it lives in DuckDB's
        buffer pool and spills to ``temp_dir`` past the memory limit."""
        exists = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0]
        if fresh or not exists:
            self.materialize(name, sql)
        else:
            self.con.execute(f"INSERT INTO {name} {sql}")

    def arrow(self, sql: str) -> pa.Table:
        result = self.con.sql(sql)
        return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.arrow()

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def map_groups(self, name: str, sql: str, key: str, order: Sequence[str], fn: GroupPass,
                   schema: pa.Schema, rows: int = GROUP_ROWS) -> None:
        """``fn`` over the rows of ``sql`` sorted by (``key``, ``order``), a few whole keys at a time
        (``whole_groups``), as the table ``name``: a vectorised pass that SQL would spell as a
        loop or a wide window. The result streams out of DuckDB, and ``fn``'s output goes to a
        parquet file in ``temp_dir`` (a second statement on this connection would end the stream)."""
        import pyarrow.parquet as pq

        result = self.con.sql(f"SELECT * FROM ({sql}) q ORDER BY {', '.join([key, *order])}")
        reader = (result.to_arrow_reader(READ_ROWS) if hasattr(result, "to_arrow_reader")
                  else result.fetch_arrow_reader(READ_ROWS))
        folder = self.temp_dir / "passes"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}-{uuid.uuid4().hex}.parquet"
        with pq.ParquetWriter(path, schema, use_dictionary=False) as out:     # dictionaries: 2x the time
            for table in whole_groups(reader, key, rows):
                out.write_table(fn(table))          # one row group a chunk, not one a read batch
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet({self.dialect.lit(str(path))})")
        if name in self._passes:
            self._passes[name].unlink(missing_ok=True)
        self._passes[name] = path

    def write(self, sql: str, path: Path) -> None:
        """The result of ``sql`` as one parquet file at ``path`` (the caller makes it atomic)."""
        self.con.execute(f"COPY ({sql}) TO {self.dialect.lit(str(path))} (FORMAT parquet, COMPRESSION zstd)")

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.temp_dir / "passes", ignore_errors=True)
        if self._own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


class Spark:
    """pyspark with the same SQL. ``master`` defaults to $CTXTAG_SPARK_MASTER, else local[*];
    under ``spark-submit`` the session it made is used as is."""

    dialect = Dialect("spark")

    def __init__(self, master: str | None = None, app: str = "ctxtag-data-plane", conf: dict | None = None):
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(app)
        master = master or os.environ.get("CTXTAG_SPARK_MASTER")
        if (master or "local").startswith("local") and not os.environ.get("SPARK_ENV_LOADED"):
            # map_groups runs Python on the workers: locally this interpreter (its pyarrow, numpy
            # and ctxtag), not the first python3 on PATH; a cluster sets its own PYSPARK_PYTHON
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if master or not os.environ.get("SPARK_ENV_LOADED"):
            builder = builder.master(master or "local[*]")
        settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.enabled": "false",
                    "spark.ui.showConsoleProgress": "false",
                    "spark.sql.execution.arrow.pyspark.enabled": "true",
                    "spark.sql.shuffle.partitions": os.environ.get("CTXTAG_SPARK_SHUFFLE_PARTITIONS", "8"),
                    "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
                    **(conf or {})}
        for k, v in settings.items():
            builder = builder.config(k, v)
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self._staging = Path(tempfile.mkdtemp(prefix="ctxtag-spark-"))

    def table(self, name: str, data: Any) -> None:
        import pandas as pd

        if isinstance(data, pa.Table):
            frame = self.spark.createDataFrame(data.to_pandas()) if data.num_rows else None
            schema = _spark_schema(data.schema)
        else:
            frame = self.spark.createDataFrame(data) if len(data) else None
            schema = _spark_schema(pa.Schema.from_pandas(pd.DataFrame(data), preserve_index=False))
        if frame is None:                     # an empty frame has no rows to infer types from
            frame = self.spark.createDataFrame([], schema)
        frame.createOrReplaceTempView(name)

    def parquet(self, name: str, paths: Sequence[str | Path]) -> None:
        self.spark.read.option("mergeSchema", "true").parquet(*_files(paths)).createOrReplaceTempView(name)

    def materialize(self, name: str, sql: str) -> None:
        # cut the lineage: a loop of statements over views of views would replan everything each time
        self.spark.sql(sql).localCheckpoint(eager=True).createOrReplaceTempView(name)
        shutil.rmtree(self._staging / name, ignore_errors=True)       # what append added before is gone

    def append(self, name: str, sql: str, fresh: bool = False) -> None:
        """Add the rows of ``sql`` to the view ``name`` (``fresh``: replace it), staged as parquet
        so the plan stays short."""
        folder = self._staging / name
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        self.spark.sql(sql).write.mode("append").parquet(str(folder))
        self.spark.read.parquet(str(folder)).createOrReplaceTempView(name)

    def arrow(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def map_groups(self, name: str, sql: str, key: str, order: Sequence[str], fn: GroupPass,
                   schema: pa.Schema, rows: int = GROUP_ROWS) -> None:
        """``DuckDB.map_groups`` on the executors: the rows are shuffled by ``key`` and sorted
        within each partition, so every partition is whole keys in order."""
        from functools import partial

        frame = self.spark.sql(sql).repartition(key).sortWithinPartitions(key, *order)
        frame = frame.mapInArrow(partial(_map_batches, key=key, fn=fn, rows=rows), _spark_schema(schema))
        frame.localCheckpoint(eager=True).createOrReplaceTempView(name)

    def write(self, sql: str, path: Path) -> None:
        """One parquet file at ``path``: Spark writes a folder of parts, coalesced to one here."""
        folder = Path(str(path) + ".spark")
        self.spark.sql(sql).coalesce(1).write.mode("overwrite").parquet(str(folder))
        (part,) = folder.glob("part-*.parquet")
        os.replace(part, path)
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """The session is shared by the process (getOrCreate) and stops with it; the staging goes now."""
        shutil.rmtree(self._staging, ignore_errors=True)


def _spark_schema(schema: pa.Schema):
    from pyspark.sql import types as T

    def kind(t: pa.DataType):
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            return T.StringType()
        if pa.types.is_integer(t):
            return T.LongType()
        if pa.types.is_floating(t):
            return T.DoubleType()
        if pa.types.is_boolean(t):
            return T.BooleanType()
        if pa.types.is_timestamp(t):
            return T.TimestampType()
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return T.ArrayType(kind(t.value_type))
        raise TypeError(f"no Spark type for {t}")

    return T.StructType([T.StructField(f.name, kind(f.type), True) for f in schema])


Engine = DuckDB | Spark


def open_engine(cfg: DataPlaneConfig | None = None, temp_dir: Path | None = None) -> Engine:
    """The engine ``cfg`` (params.yaml's data_plane) names; DuckDB by default."""
    cfg = cfg or DataPlaneConfig()
    if cfg.engine == "spark":
        return Spark(master=cfg.spark_master)
    return DuckDB(memory_limit=cfg.memory_limit, temp_dir=temp_dir)
