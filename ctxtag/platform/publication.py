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
- the user views are materialised from the pipeline's offline parquet when those changed.

A rerun with the same champion and the same offline files changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from pathlib import Path

from ctxtag.config import Params
from ctxtag.platform.feast_definitions import TRACK_VIEW, definitions, offline_file
from ctxtag.platform.feature_store import mark_published, materialize_files, open_store, published

USER_SOURCES = ("user_history", "user_device_time")
EMBEDDING_SOURCES = ("track_embeddings", "user_embeddings")
KEEP_VERSIONS = 2                     # the served view and the one before it


class NotPublished(LookupError):
    """The served store holds no features of the model that would use them."""


def view_name(model_version: str) -> str:
    """``ctxtag-context-model/3`` -> ``track_audio_features__ctxtag_context_model_3``."""
    return f"{TRACK_VIEW}__{re.sub(r'[^A-Za-z0-9]+', '_', model_version).strip('_').lower()}"


def served(params: Params, root: Path = Path(".")) -> dict:
    """The served publication's stamp (ctxtag.platform.feature_store.mark_published), or
    NotPublished."""
    stamp = published(root / params.paths.online)
    if stamp is None or "track_features" not in stamp:
        raise NotPublished(f"{root / params.paths.online}: nothing published; run `ctxtag publish` "
                           "(after `ctxtag release`)")
    return stamp


def champion_track_features(params: Params, checkpoint: Path, model_version: str, out: Path) -> dict:
    """The catalogue's track features by ``checkpoint`` -> ``out``, labelled ``model_version``;
    partitions whose checkpoint, audio and code are unchanged are reused."""
    from ctxtag.common.progress import progress
    from ctxtag.tagger import batch

    j = batch.job(params, checkpoint=checkpoint, label=model_version)
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


def publish(params: Params, root: Path = Path("."), online: str = "sqlite", redis_url: str = "localhost:6379") -> dict:
    """Publish the context @champion's track features and the pipeline's user features into the
    served store (see the module's docstring for the order that keeps versions apart)."""
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
        before = published(folder) or {}
        kept = {v: m for v, m in before.get("views", {}).items() if v != view}
        store = open_store(folder, online, redis_url=redis_url)
        with_embeddings = all(offline_file(feast_dir, s).exists() for s in EMBEDDING_SOURCES)
        objects = definitions(Path(os.path.relpath(feast_dir, folder)), params.contexts, params.logs.devices,
                              params.logs.networks, embeddings=with_embeddings, track_view=view, track_file=track_file)
        services = [o for o in objects if isinstance(o, FeatureService)]
        store.apply([o for o in objects if not isinstance(o, FeatureService)])   # beside the served view
        track_key = features.get("combined") or os.stat(folder / track_file).st_mtime_ns
        views = []
        if before.get("views", {}).get(view, {}).get("key") != track_key:
            views.append(view)
        offline = _offline_key(feast_dir, USER_SOURCES + (EMBEDDING_SOURCES if with_embeddings else ()))
        users = before.get("offline") != offline or before.get("online_store") != online
        if users:                                        # new snapshots (or another online store)
            views += [o.name for o in objects if type(o).__name__ == "FeatureView" and o.name != view]
        if not views and before.get("model") == model:          # a rerun: nothing to change
            return {"version": before["version"], "model": model, "view": view, "tracks": features["tracks"],
                    "materialised": [], "materialize_chunks": 0, "dropped": [], "reused_features": True,
                    "changed": False, "seconds": round(time.perf_counter() - start, 2)}
        chunks = 0
        if views:
            sources = [offline_file(feast_dir, s) for s in offline] if users else []
            with contextlib.redirect_stdout(sys.stderr):     # Feast prints; stdout is the command's JSON
                chunks = materialize_files(store, [folder / track_file, *sources], views)
        store.apply(services)                            # the switch, for clients of the services
        retained = dict(list(kept.items())[-(KEEP_VERSIONS - 1):]) if KEEP_VERSIONS > 1 else {}
        record = {"model": model, "view": view, "file": str(track_file), "key": track_key}
        version = mark_published(folder, features["tracks"], model=model, track_features=record, online_store=online,
                                 probe_user=probe_user(feast_dir),
                                 views={**retained, view: record}, offline=offline,
                                 feature_services=[s.name for s in services])   # the switch, for the API
        dropped = [v for v in kept if v not in retained]
        for v in dropped:                                # no service names them since the switch
            store.apply([], objects_to_delete=[store.get_feature_view(v)], partial=False)
            (folder / kept[v]["file"]).unlink(missing_ok=True)
            (folder / kept[v]["file"]).with_suffix(".json").unlink(missing_ok=True)
    stats = {"version": version, "model": model, "view": view, "tracks": features["tracks"],
             "materialised": views, "materialize_chunks": chunks, "dropped": dropped,
             "reused_features": bool(features.get("reused")), "changed": True, "seconds": round(time.perf_counter() - start, 2)}
    print(f"published {model}'s track features ({features['tracks']} tracks) as {view}; "
          f"materialised {len(views)} view(s) in {stats['seconds']} s", file=sys.stderr)
    return stats
