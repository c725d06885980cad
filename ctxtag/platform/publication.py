"""`ctxtag publish`: the served feature store, from the registry's champions.

The DVC stage publish_features writes the offline features (user snapshots, listening embeddings)
into ``paths.feast``; what the API and other services read online lives in ``paths.online``, a
Feast repository outside every DVC output, written only here, after a promotion or rollback (and
after each daily publish_features, for the users' new snapshots):

- the track features (context probabilities, audio embedding) are computed with the tagger the
  context model's @champion carries — the tagger its user models were trained on, so the
  recommender's user and track terms come from one model — through the partitioned batch job
  (ctxtag.tagger.batch; a checkpoint's parts are kept, so rolling back recomputes nothing), and
  carry that registered version ("ctxtag-context-model/3") in their ``tagger`` column;
- each registered version gets its own feature view (``track_audio_features__<version>``). The new
  one is applied and materialised beside the served one; then ONE registry write points the
  feature services (``track_contexts``, ``user_aware_tagger``, ``joint_model``) at it; then
  ``published.json`` (the API's catalogue) is replaced. A client reading through a feature
  service, or the API, sees every track of one version: all old until the switch, all new after.
  The previous version's view stays (clients whose registry cache is older still read whole rows,
  and a rollback is one switch); older ones are removed.
- the listening embeddings (Chen et al.'s AE / UE) are the embeddings family's @champion's tables,
  relabelled with its registered version and published the same way (one view pair per version,
  switched by the same registry write);
- the user views are materialised from the pipeline's offline parquet when those changed.

A rerun with the same champion and the same offline files changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import time
from pathlib import Path

from ctxtag.config import Params
from ctxtag.platform.feast_definitions import LISTENING_VIEWS, TRACK_VIEW, definitions, offline_file
from ctxtag.platform.feature_store import (
    hide_password,
    mark_published,
    materialize_files,
    open_store,
    published,
)

USER_SOURCES = ("user_history", "user_device_time")
USER_VIEWS = ("user_listening_history", "user_device_time_profile")
KEEP_VERSIONS = 2                     # the served view and the one before it


class NotPublished(LookupError):
    """The served store holds no features of the model that would use them."""


def view_name(model_version: str, view: str = TRACK_VIEW) -> str:
    """``ctxtag-context-model/3`` -> ``track_audio_features__ctxtag_context_model_3``."""
    return f"{view}__{re.sub(r'[^A-Za-z0-9]+', '_', model_version).strip('_').lower()}"


def champion_listening(params: Params, root: Path, folder: Path) -> dict | None:
    """The embeddings family's @champion tables, copied into the served folder with their
    ``embedding_model`` column naming the registered version: {"model", "views": {kind: (view,
    file relative to the folder)}}; None while no version is champion. A registered version's
    tables never change (champion_files checked their sha256), so its views are named by it."""
    import pandas as pd

    from ctxtag.common.io import atomic_path
    from ctxtag.platform.registry import NoChampion, champion_files

    try:
        files, model = champion_files(params, "embeddings", root)
    except NoChampion:
        return None
    views = {}
    for kind, base in LISTENING_VIEWS.items():
        view = view_name(model, base)
        target = folder / "listening" / f"{view}.parquet"
        if not target.exists():
            table = pd.read_parquet(files[f"{kind}_embeddings"])
            if "embedding_model" in table:
                table["embedding_model"] = model
            with atomic_path(target) as tmp:
                table.to_parquet(tmp, index=False)
        views[kind] = (view, str(target.relative_to(folder)))
    return {"model": model, "views": views}


def _prune(params: Params, store, folder: Path, stamp: dict) -> list[str]:
    """Drop the versioned views the registry holds that the stamp keeps no record of (two
    publications back, or left by a publication that died before its stamp), and their files."""
    keep = set(stamp.get("views", {}))
    for record in stamp.get("listening_views", {}).values():
        keep |= {v for v, _ in record["views"].values()}
    versioned = tuple(f"{base}__" for base in (TRACK_VIEW, *LISTENING_VIEWS.values()))
    drop = [v for v in store.list_feature_views() if v.name.startswith(versioned) and v.name not in keep]
    if drop:
        store.apply([], objects_to_delete=drop, partial=False)

    from ctxtag.tagger.batch import model_parts_dir, parts_dir

    # the partitions of checkpoints no kept version uses
    used = {model_parts_dir(params, r["checkpoint"]) for r in stamp.get("views", {}).values() if "checkpoint" in r}
    models = parts_dir(params) / "models"
    for old in models.iterdir() if models.is_dir() else []:
        if old.is_dir() and old not in used:
            shutil.rmtree(old, ignore_errors=True)
    files = {f for r in stamp.get("views", {}).values() for f in [r["file"]]}
    files |= {f for r in stamp.get("listening_views", {}).values() for _, f in r["views"].values()}
    for sub in ("track_features", "listening"):
        for f in (folder / sub).glob("*.parquet") if (folder / sub).is_dir() else []:
            if str(f.relative_to(folder)) not in files:
                f.unlink(missing_ok=True)
                f.with_suffix(".json").unlink(missing_ok=True)
    return [v.name for v in drop]


def _retain(before: dict, current: str, record: dict) -> dict:
    """Publication records (view -> record) to keep: the one served now and the ones before it,
    KEEP_VERSIONS in all (what _prune drops is everything else)."""
    kept = {v: r for v, r in before.items() if v != current}
    retained = dict(list(kept.items())[-(KEEP_VERSIONS - 1):]) if KEEP_VERSIONS > 1 else {}
    return {**retained, current: record}


def served(params: Params, root: Path = Path(".")) -> dict:
    """The served publication's stamp (ctxtag.platform.feature_store.mark_published), or
    NotPublished."""
    stamp = published(root / params.paths.online)
    if stamp is None or "track_features" not in stamp:
        raise NotPublished(f"{root / params.paths.online}: nothing published; run `ctxtag publish` "
                           "(after `ctxtag release`)")
    return stamp


def stale(params: Params, root: Path = Path(".")) -> bool:
    """Whether the served store lags the registry: its track features or listening embeddings are
    not the current champions' (a promotion not yet published, or a publication that failed)."""
    from ctxtag.platform.registry import alias_version, model_name, open_client

    stamp = published(root / params.paths.online) or {}
    client = open_client(params)
    want = {f: alias_version(client, model_name(params, f), "champion") for f in ("context", "embeddings")}
    have = {"context": stamp.get("model"), "embeddings": (stamp.get("listening") or {}).get("model")}
    return any(v is not None and have[f] != f"{model_name(params, f)}/{v}" for f, v in want.items())


def champion_track_features(params: Params, checkpoint: Path, model_version: str, out: Path) -> dict:
    """The catalogue's track features by ``checkpoint`` -> ``out``, labelled ``model_version``;
    partitions whose checkpoint, audio and code are unchanged are reused."""
    from ctxtag.common.progress import progress
    from ctxtag.tagger import batch

    j = batch.job(params, checkpoint=checkpoint, label=model_version)
    if params.paths.checkpoint(params.train.loss).exists():       # the pipeline's parts, where the same
        batch.seed(j, batch.job(params))
    results = [batch.run_partition(params, k, in_job=j)
               for k in progress(range(j.n), total=j.n, description=f"track features of {model_version}")]
    return batch.combine(params, results, in_job=j, out=out)


def _offline_key(feast_dir: Path, sources) -> dict[str, list[int]]:
    """(size, mtime) of each offline file: what says the pipeline published new snapshots."""
    key = {}
    for s in sources:
        f = offline_file(feast_dir, s)
        if f.exists():
            st = f.stat()
            key[s] = [st.st_size, st.st_mtime_ns]
    return key


def probe_user(feast_dir: Path) -> str | None:
    """A user whose features this publication materialises (the last of the last row group: one
    group read), which serving's readiness asks the store for."""
    import pyarrow.parquet as pq

    history = pq.ParquetFile(offline_file(feast_dir, "user_history"))
    if not history.num_row_groups:
        return None
    users = history.read_row_group(history.num_row_groups - 1, columns=["user_id"]).column(0)
    return str(users[len(users) - 1]) if len(users) else None


def publish(params: Params, root: Path = Path("."), online: str = "sqlite", redis_url: str = "localhost:6379",
            registry: str | None = None) -> dict:
    """Publish the context @champion's track features, the embeddings @champion's listening
    embeddings and the pipeline's user features into the served store (see the module's docstring
    for the order that keeps versions apart). ``registry``: a shared SQL registry's URL
    (ctxtag.platform.feature_store.sql_registry), else the file registry in ``paths.online``.
    With a SQL registry the feature services switch one row each, in one apply (milliseconds
    apart); each service still reads one version whole."""
    from feast import FeatureService

    from ctxtag.platform.registry import champion_files

    start = time.perf_counter()
    p = params.paths
    folder, feast_dir = (root / p.online).resolve(), (root / p.feast).resolve()
    if not offline_file(feast_dir, "user_history").exists():
        raise NotPublished(f"{feast_dir}: no offline user features; run `dvc repro publish_features` first")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                 # one publication at a time
        files, model = champion_files(params, "context", root)
        view = view_name(model)
        track_file = Path("track_features") / f"{view}.parquet"
        features = champion_track_features(params, files["tagger"], model, folder / track_file)
        listening = champion_listening(params, root, folder)
        target = (f"{online}:{redis_url}" if online == "redis" else online) + \
            (f"|{hide_password(registry)}" if registry else "")
        before = published(folder) or {}
        if before.get("store", before.get("online_store")) != target:
            before = {}                                  # another online store: everything goes in
        store = open_store(folder, online, redis_url=redis_url, registry=registry)
        objects = definitions(Path(os.path.relpath(feast_dir, folder)), params.contexts, params.logs.devices,
                              params.logs.networks, embeddings=listening is not None, track_view=view,
                              track_file=track_file,
                              listening={k: (v, Path(f)) for k, (v, f) in listening["views"].items()} if listening else None)
        services = [o for o in objects if isinstance(o, FeatureService)]
        store.apply([o for o in objects if not isinstance(o, FeatureService)])   # beside the served views
        track_key = features["combined"]
        views, files_of = [], {view: [folder / track_file]}
        if before.get("views", {}).get(view, {}).get("key") != track_key:
            views.append(view)
        if listening:
            pair = listening["views"]["track"][0]
            files_of[pair] = [folder / f for _, f in listening["views"].values()]
            if pair not in before.get("listening_views", {}):
                views += [v for v, _ in listening["views"].values()]
        offline = _offline_key(feast_dir, USER_SOURCES)
        users = before.get("offline") != offline
        if users:                                        # new snapshots (or another online store)
            views += list(USER_VIEWS)
        if not views and before.get("model") == model and \
                (before.get("listening") or {}).get("model") == (listening or {}).get("model"):
            store.apply(services)                        # idempotent: converges after a crash mid-switch
            return {"version": before["version"], "model": model, "view": view, "tracks": features["tracks"],
                    "listening": (listening or {}).get("model"), "materialised": [], "materialize_chunks": 0,
                    "dropped": _prune(params, store, folder, before), "reused_features": True, "changed": False,
                    "seconds": round(time.perf_counter() - start, 2)}
        chunks = 0
        if views:
            sources = [f for v, fs in files_of.items() if v in views for f in fs]
            sources += [offline_file(feast_dir, s) for s in USER_SOURCES] if users else []
            with contextlib.redirect_stdout(sys.stderr):     # Feast prints; stdout is the command's JSON
                chunks = materialize_files(store, sources, views)
        probe = probe_user(feast_dir)                    # before the switch: nothing may fail after it
        store.apply(services)                            # the switch, for clients of the services
        record = {"model": model, "view": view, "file": str(track_file), "key": track_key,
                  "checkpoint": features["model_sha256"]}
        track_views = _retain(before.get("views", {}), view, record)
        listening_views = _retain(before.get("listening_views", {}), listening["views"]["track"][0], listening) \
            if listening else {}
        version = mark_published(folder, features["tracks"], model=model, track_features=record, online_store=online,
                                 store=target, probe_user=probe, listening=listening,
                                 views=track_views, listening_views=listening_views, offline=offline,
                                 feature_services=[s.name for s in services])   # the switch, for the API
        dropped = _prune(params, store, folder, published(folder))
    stats = {"version": version, "model": model, "view": view, "tracks": features["tracks"],
             "listening": (listening or {}).get("model"), "materialised": views, "materialize_chunks": chunks,
             "dropped": dropped, "reused_features": bool(features.get("reused")), "changed": True,
             "seconds": round(time.perf_counter() - start, 2)}
    print(f"published {model}'s track features ({features['tracks']} tracks) as {view}"
          + (f", {listening['model']}'s listening embeddings" if listening else "")
          + f"; materialised {len(views)} view(s) in {stats['seconds']} s", file=sys.stderr)
    return stats
