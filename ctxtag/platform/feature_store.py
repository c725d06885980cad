"""The Feast store: SQLite online store by default, Redis in production (chosen by the caller,
from the CLI's --online or CTXTAG_ONLINE_STORE); file offline store over the snapshot parquet.
The registry is a file beside the store by default; in production a SQL database
(CTXTAG_FEAST_REGISTRY, e.g. Postgres) that every service reading the store shares."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctxtag.common.io import atomic_path
from ctxtag.config import Params
from ctxtag.platform.feast_definitions import definitions, offline_file


def registry_file(feast_dir: Path, online: str) -> Path:
    """The registry of an online store's publication (feature_repo/feature_store*.yaml name the
    same files: one registry for the pipeline and the feast CLI)."""
    return Path(feast_dir) / f"registry-{online}.db"


def sql_registry(url: str, timeout_ms: int | None = None) -> dict:
    """Feast's SQL registry at the SQLAlchemy ``url``: one registry for every service and
    machine (the file registry is one machine's). Views being materialised keep serving their last
    values (Feast would otherwise refuse reads of a view while the daily publication refreshes it);
    a dropped connection is tested before use (a restarted Postgres), connecting is bounded."""
    if not url.startswith(("postgresql+", "mysql+", "sqlite:")):
        raise ValueError(f"Feast registry {hide_password(url)!r}: a SQLAlchemy URL with its driver "
                         "(postgresql+psycopg2://user@host:port/db) is expected")
    seconds = max(1, round((timeout_ms or 10_000) / 1000))
    engine = {"pool_pre_ping": True, **({"connect_args": {"connect_timeout": seconds}}
                                         if url.startswith("postgresql+") else {})}
    return {"registry_type": "sql", "path": url, "cache_ttl_seconds": 60,
            "serve_features_while_materializing": True, "sqlalchemy_config_kwargs": engine}


def hide_password(url: str) -> str:
    """A registry URL as it may be logged or stamped: its password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:                               # noqa: BLE001 - not a URL: nothing to hide
        return url


def open_store(feast_dir: Path, online: str = "sqlite", redis_url: str = "localhost:6379",
               project: str = "ctxtag", timeout_ms: int | None = None, registry: str | None = None):
    """``timeout_ms`` bounds each Redis operation (connect and read; serving sets it so a dead or
    frozen Redis costs a request that long, not minutes). ``registry``: a SQLAlchemy URL of a
    shared SQL registry (``sql_registry``); default the file registry in ``feast_dir``."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    feast_dir = feast_dir.resolve()
    feast_dir.mkdir(parents=True, exist_ok=True)
    if online == "sqlite":
        online_store = {"type": "sqlite", "path": str(feast_dir / "online.db")}
    elif online == "redis":
        timeouts = f",socket_timeout={timeout_ms / 1000},socket_connect_timeout={timeout_ms / 1000}" \
            if timeout_ms else ""
        online_store = {"type": "redis", "connection_string": redis_url + timeouts}
    else:
        raise ValueError(f"online store must be sqlite or redis, not {online!r}")
    # repo_path on the config too: Feast resolves the sources' relative paths (as the registry
    # stores them, ctxtag.platform.feast_definitions) against the config's repo_path
    # written by rename (AtomicFileRegistryStore): a reader that refreshes during an apply reads
    # the registry before or after it, never a truncated file
    registry = sql_registry(registry, timeout_ms) if registry else \
        {"registry_type": "file", "path": str(registry_file(feast_dir, online)),
         "registry_store_type": f"{__name__}.AtomicFileRegistryStore"}
    config = RepoConfig(project=project, registry=registry, provider="local",
                        online_store=online_store, offline_store={"type": "file"},
                        entity_key_serialization_version=3, repo_path=feast_dir)
    return FeatureStore(repo_path=str(feast_dir), config=config)


@cache
def _file_registry_store():
    from feast.infra.registry.file import FileRegistryStore

    class AtomicFileRegistryStore(FileRegistryStore):
        """Feast's file registry, written to a temporary file and renamed over the old one (Feast
        truncates and rewrites it in place)."""

        def _write_registry(self, registry_proto) -> None:
            import uuid

            from feast.utils import _utc_now

            registry_proto.version_id = str(uuid.uuid4())
            registry_proto.last_updated.FromDatetime(_utc_now())
            with atomic_path(self._filepath) as tmp:
                tmp.write_bytes(registry_proto.SerializeToString())

    return AtomicFileRegistryStore


def __getattr__(name: str):
    # built on first use, so importing this module does not import Feast
    if name == "AtomicFileRegistryStore":
        return _file_registry_store()
    raise AttributeError(name)


class OnlineReader:
    """Feast online reads of whole feature views for the request path: the provider's
    ``online_read`` per view and Feast's own value conversion (feast.type_map), without the
    general ``get_online_features`` machinery around them (reference parsing, the registry walk,
    the response's protobuf assembly and to_dict). The same columns as
    ``store.get_online_features(features=view:feature refs, ...).to_dict()`` (tested equal), at
    2.4x less CPU per lookup on the demo world. Views and their features are resolved once."""

    def __init__(self, store, views: list[str], join_key: str):
        from feast.type_map import feast_value_type_to_python_type

        self.store, self.join_key = store, join_key
        self.views = [store.get_feature_view(v) for v in views]
        self.names = [[f.name for f in v.features] for v in self.views]
        self._python = feast_value_type_to_python_type

    def refs(self) -> list[str]:
        return [f"{v.name}:{n}" for v, names in zip(self.views, self.names, strict=True) for n in names]

    def read(self, ids: list[str]) -> dict[str, list]:
        """Column -> one value per id (None where the store holds nothing)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        keys = [EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=str(i))]) for i in ids]
        provider = self.store._get_provider()
        out: dict[str, list] = {self.join_key: list(ids)}
        for view, names in zip(self.views, self.names, strict=True):
            rows = provider.online_read(self.store.config, view, keys, list(names))   # Redis appends to it
            for n in names:
                out[n] = [None if values is None or n not in values else self._python(values[n])
                          for _, values in rows]
        return out


def publish(store, params: Params, feast_dir: Path, history: pd.DataFrame | Path, device_time: pd.DataFrame | Path,
            tracks: pd.DataFrame, embeddings: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            chunk_days: int = 7, materialize: bool = True) -> dict:
    """Write the offline parquet, apply the definitions, materialise in time chunks (bounded memory;
    ``materialize=False``: the offline store alone, as the DVC stage publish_features writes it).

    ``history`` and ``device_time`` are frames, or their offline parquet already written in place
    by the data-plane engine (ctxtag.listening.snapshots.snapshot_files) at volume.
    ``embeddings``: (track, user) listening-embedding tables of `ctxtag embeddings`, if trained."""
    named = {"user_history": history, "user_device_time": device_time, "track_features": tracks}
    if embeddings is not None:
        named |= {"track_embeddings": embeddings[0], "user_embeddings": embeddings[1]}
    targets = []
    for source, frame in named.items():
        target = offline_file(feast_dir, source)
        if isinstance(frame, pd.DataFrame):
            with atomic_path(target) as tmp:
                frame.to_parquet(tmp, index=False)
        elif Path(frame).resolve() != target.resolve():
            raise ValueError(f"{source}: the engine must write it at {target}, not {frame}")
        targets.append(target)
    # the sources name their parquet relative to the store's repo path, so the registry moves with it
    data_dir = Path(os.path.relpath(feast_dir.resolve(), Path(store.repo_path).resolve()))
    store.apply(definitions(data_dir, params.contexts, params.logs.devices, params.logs.networks,
                            embeddings=embeddings is not None))
    windows = materialize_files(store, targets, chunk_days=chunk_days) if materialize else 0
    users = pq.read_table(offline_file(feast_dir, "user_history"), columns=["user_id"]).column(0)
    if materialize:
        mark_published(feast_dir, len(tracks))
    return {"users": len(pc.unique(users)), "snapshots": len(users), "tracks": len(tracks),
            "listening_embeddings": {"tracks": len(embeddings[0]), "users": len(embeddings[1])} if embeddings else None,
            "materialize_chunks": windows}


def materialize_files(store, files: list[Path], views: list[str] | None = None, chunk_days: int = 7) -> int:
    """Materialise ``views`` (default: all) over the time span of ``files`` (their offline
    parquet), in windows of ``chunk_days`` (bounded memory); returns the number of windows."""
    if not files:
        return 0
    stamps = pd.Series(pd.concat([_distinct_stamps(f) for f in files]).unique())
    start = stamps.min().to_pydatetime() - timedelta(seconds=1)
    end = stamps.max().to_pydatetime() + timedelta(seconds=1)
    width = timedelta(days=chunk_days)
    # only the windows that hold rows: track features stamped months after the last snapshot
    # must not cost one empty materialisation per week in between
    windows = sorted({int((t.to_pydatetime() - start) / width) for t in stamps})
    for w in windows:
        store.materialize(start_date=start + w * width, end_date=min(start + (w + 1) * width, end),
                          feature_views=views)
    return len(windows)


PUBLISHED = "published.json"


def mark_published(feast_dir: Path, tracks: int, **more) -> str:
    """Stamp a completed publication (written last, atomically): serving reloads its catalogue
    when this version changes, and reports it. ``more``: what else the stamp records."""
    import uuid
    from datetime import UTC, datetime

    from ctxtag.common.io import write_json

    at = datetime.now(UTC)
    version = f"{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    write_json({"version": version, "published_at": at.isoformat(), "tracks": tracks, **more},
               Path(feast_dir) / PUBLISHED)
    return version


def published(feast_dir: Path) -> dict | None:
    """The last completed publication's stamp, or None."""
    import json

    try:
        return json.loads((Path(feast_dir) / PUBLISHED).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _distinct_stamps(path: Path) -> pd.Series:
    """The distinct event times of an offline file (one column read, not the table)."""
    stamps = pc.unique(pq.read_table(path, columns=["event_timestamp"]).column(0).combine_chunks())
    return pd.Series(pd.to_datetime(stamps.to_pandas(), utc=True))


def historical(store, entity_df: pd.DataFrame, features) -> pd.DataFrame:
    """Point-in-time training rows: every entity row comes back, with NaN where no snapshot <= its
    time exists. (Feast's file offline store drops such rows of entities it knows; a training set
    must not lose rows silently, so the result is joined back onto ``entity_df``.)"""
    got = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    keys = list(entity_df.columns)
    feature_cols = [c for c in got.columns if c not in keys]
    # one feature row per key, so repeated entity rows are not multiplied by the join
    return entity_df.merge(got[keys + feature_cols].drop_duplicates(keys), on=keys, how="left")
