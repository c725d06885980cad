"""What the serving API answers, without HTTP: contexts for audio (the registry's @champion tagger),
contexts for a (user, device, time) (the situational GBT on Feast online user features),
track recommendations for a user in a context (the user-aware tagger over the catalogue,
ctxtag.serving.recommend), and new releases for a user by the cosine similarity of the listening
embeddings (Chen et al.; exact or HNSW search, ctxtag.serving.ann). Both user models are parts of
the context model's @champion, checked against their registered sha256
(ctxtag.platform.registry.champion_files); a watcher thread reports a @champion that moved.

Built once per process (the API's lifespan). Features are assembled by the same function as
training (ctxtag.context.features.blocks), from a dict of one-element columns: no pandas frame on
the request path. Features come from the served store (``paths.online``, ctxtag.platform.publication):
the catalogue (track terms, new-release index) is the publication's track features, which the
context @champion's own tagger computed — a service refuses features of another model version,
so after a promotion the old service answers until the new champion's features are published,
then the new one does. The catalogue is versioned by the publication stamp and swapped whole when
features are republished, so a request sees one version; a catalogue too large to score whole gets its two-stage index built once per publication
into ``paths.serving_cache`` and mapped read-only by every worker. User features are read through
Feast's provider (ctxtag.platform.feature_store.OnlineReader). Every online-store read is bounded
(``serving.store_timeout_ms``, one retry) and fails as
StoreUnavailable, which the API answers with 503 and the reason.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from ctxtag.common.io import file_sha256
from ctxtag.config import Params
from ctxtag.context.features import blocks
from ctxtag.context.streams import USER_VIEWS, cyclic_time
from ctxtag.platform.feast_definitions import offline_file
from ctxtag.tagger.inference import clip_probabilities


class UnknownUser(LookupError):
    pass


class StoreUnavailable(RuntimeError):
    """The online store did not answer in time, or holds no features: the reason is the message."""


@dataclass
class Ranked:
    names: list[str]
    scores: np.ndarray
    version: str | None = None        # the features' publication that produced it, where one did
    model: str | None = None          # the registered model whose track features it used

    def top(self, k: int) -> list[dict]:
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [{"name": self.names[j], "score": round(float(self.scores[j]), 5)} for j in order]


@dataclass
class Catalogue:
    """One publication of the track features, as serving uses them."""

    version: str
    model: str                        # the registered model version that computed the track features
    tracks: object                    # ctxtag.serving.recommend.Recommender
    listening: dict | None            # "new" -> (track ids, cosine index), None when not published
    probe_user: str | None            # a user the store must know while this version is served
    listening_model: str | None = None    # the registered embeddings whose AE / UE are published
    listening_view: str | None = None     # the user-embedding view of that version (online store)


def _matrix(column, dim: int) -> np.ndarray:
    """An arrow column of equal-length float lists (no nulls) -> (rows, dim) float32, vectorised."""
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)


@torch.no_grad()
def user_terms(model, x: dict[str, np.ndarray]) -> np.ndarray:
    """(rows, F): the user-aware tagger's user half of the fused layer (ctxtag.serving.recommend)
    for feature blocks ``x`` (ctxtag.context.features.blocks)."""
    return sum(model.fused_term(b, torch.from_numpy(x[b])) for b in model.inputs if b != "audio").numpy()


def situation_columns(features: dict, device: str, network: str, when: datetime, age: float | None,
                      gender: str | None) -> dict:
    """One request's columns for ctxtag.context.features.blocks: the user's online features and
    the stream's situation; ``when`` is the listener's local time (its wall clock is the local hour)."""
    time_of_day = cyclic_time(np.array([when.hour + when.minute / 60.0]), np.array([when.weekday()]))
    return {**features, **time_of_day, "device": [device], "network": [network],
            "age": [np.nan if age is None else float(age)], "gender": [gender]}


def _watch_registry(service: weakref.ref, params: Params, root: Path, loaded: dict[str, str],
                    moved: threading.Event, stop: threading.Event) -> None:
    """A daemon thread that asks the registry every ``serving.reload_s`` whether a family's
    @champion is still the version the service loaded, and sets ``moved`` once one is not. Off the
    request path, so an MLflow server that is slow or down never holds a request (it keeps what is
    loaded, and asks again); it ends once it has reported, when the service is closed (``stop``),
    or when it is gone (a weak reference)."""
    from ctxtag.common.tracking import tracking_uri
    from ctxtag.platform.registry import alias_version, model_name

    uri = tracking_uri(root)                   # the store the models were loaded from

    def loop() -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)   # not the process-wide URI
        while not moved.wait(params.serving.reload_s):
            if stop.is_set() or service() is None:
                return
            try:
                now = {f: f"{model_name(params, f)}/{alias_version(client, model_name(params, f), 'champion')}"
                       for f in loaded}
            except Exception:              # noqa: BLE001 - the registry unreachable: serve what is loaded
                continue
            if now != loaded:
                moved.set()

    threading.Thread(target=loop, name="ctxtag-registry-watch", daemon=True).start()


class Service:
    def __init__(self, params: Params, root: Path, online: str = "sqlite", redis_url: str = "localhost:6379",
                 registry: str | None = None):
        from ctxtag.context import artifacts
        from ctxtag.platform.feature_store import OnlineReader, open_store
        from ctxtag.platform.registry import champion_files

        torch.set_num_threads(1)          # one thread per worker process: threads fight on few cores
        self.params, self.root = params, Path(root)
        p = params.paths
        self.feast_dir = self.root / p.online              # the served store (ctxtag publish)
        self.offline_dir = self.root / p.feast             # the pipeline's offline parquet
        self.store = open_store(self.feast_dir, online, redis_url=redis_url,
                                timeout_ms=params.serving.store_timeout_ms, registry=registry)
        self._bound_retries()
        self.user_reader = OnlineReader(self.store, list(USER_VIEWS), "user_id")
        # every model from the registry's @champions, checked against the sha256 registered with
        # it: the tagger, and the user models the context model carries (never data/user_models/)
        parts, context_version = champion_files(params, "context", self.root)
        self.situational = artifacts.load_situational(parts["situational"])
        self.user_aware = artifacts.load_tagger(parts["audio_user"])
        self._user_aware_digest = file_sha256(parts["audio_user"])
        self.tagger, self.tagger_version = self._champion()
        # what answers each kind of request: "name/version" in the registry
        self.model_versions = {"tagger": self.tagger_version, "user_aware": context_version,
                               "situational": context_version}
        self._lock = threading.Lock()
        self.catalogue = self._load_catalogue(self._stamp(context_version))
        self._checked = time.monotonic()
        # promotions and rollbacks: a watcher notices a @champion that moved (API: a new Service)
        self.champions = {"tagger": self.tagger_version, "context": context_version}
        self.moved, self._stop = threading.Event(), threading.Event()
        _watch_registry(weakref.ref(self), params, self.root, dict(self.champions), self.moved, self._stop)
        # serving.shadow: the @challengers score requests too, off the request path (ctxtag.serving.shadow)
        self.shadows = {}
        if params.serving.shadow:
            from ctxtag.serving import shadow

            self.shadows = shadow.start(params, self.root, self.champions)

    def close(self, wait: bool = True) -> None:
        """Stop watching the registry and shadow scoring, its figures written (the API's shutdown,
        with ``wait``; a service replaced after a promotion without)."""
        self._stop.set()
        for s in self.shadows.values():
            s.close(wait)

    # --- the online store -------------------------------------------------------------------------
    def _bound_retries(self) -> None:
        """At most one retry of a failed Redis call on the request path (redis-py retries three
        times with backoff by default)."""
        online = self.store._get_provider().online_store
        if hasattr(online, "_get_client"):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            online._get_client(self.store.config.online_store).set_retry(Retry(NoBackoff(), 1))

    def _online(self, read, *args) -> dict:
        """``read(*args)``, any failure of the store reported as StoreUnavailable."""
        try:
            return read(*args)
        except Exception as exc:          # noqa: BLE001 - any store failure is the same to a client
            raise StoreUnavailable(f"online store unavailable: {type(exc).__name__}: {exc}") from exc

    def user_features(self, user_id: str) -> dict:
        """The user's online features as one-element columns; UnknownUser if the store has none,
        StoreUnavailable if it holds nobody's (emptied) or does not answer."""
        got = self._online(self.user_reader.read, [user_id])
        if got["n_streams"][0] is None:
            if self.catalogue.probe_user not in (None, user_id):
                self._probe()                     # everybody unknown: the store, not the user
            raise UnknownUser(user_id)
        return got

    def check_store(self) -> None:
        """Readiness: the store answers and still holds the probe user's features."""
        if self.catalogue.probe_user is None:
            raise StoreUnavailable("no user features were published")
        self._probe()

    def _probe(self) -> None:
        """StoreUnavailable unless the store answers with the probe user's features."""
        got = self._online(self.user_reader.read, [self.catalogue.probe_user])
        if got["n_streams"][0] is None:
            raise StoreUnavailable("online store holds no user features (emptied or not materialised)")

    # --- the catalogue, versioned by the publication stamp ------------------------------------------
    def _stamp(self, model: str) -> dict:
        """The served publication, if the track features in it are ``model``'s (NotPublished
        otherwise: a user model is never served with another tagger's track embeddings)."""
        from ctxtag.platform.publication import NotPublished, served

        stamp = served(self.params, self.root)
        if stamp["model"] != model:
            raise NotPublished(f"the served track features are {stamp['model']}'s, the context @champion is "
                               f"{model}: run `ctxtag publish`")
        return stamp

    def _load_catalogue(self, stamp: dict) -> Catalogue:
        """The published track features, read from the parquet the store was materialised from
        (columnar, vectorised: a 10M-track catalogue is not 10M online lookups)."""
        version, listening = stamp["version"], stamp.get("listening")
        return Catalogue(version=version, model=stamp["model"],
                         tracks=self._recommender(version, self.feast_dir / stamp["track_features"]["file"]),
                         listening=self._listening_indexes(listening), probe_user=stamp.get("probe_user"),
                         listening_model=listening["model"] if listening else None,
                         listening_view=listening["views"]["user"][0] if listening else None)

    def _recommender(self, version: str, track_file: Path):
        """The user-aware tagger over the catalogue. A large one is built once per (publication,
        model, retrieval settings) into ``paths.serving_cache`` under a file lock — the first worker
        builds, the others wait and map the same terms read-only — and older builds are removed."""
        import fcntl
        import hashlib
        import json
        import shutil

        import pyarrow as pa
        import pyarrow.parquet as pq

        from ctxtag.common.io import atomic_dir
        from ctxtag.serving.recommend import Recommender, RetrievalConfig, track_terms

        s = self.params.serving
        cfg = RetrievalConfig(s.exhaustive_max, s.prototypes, s.per_list, s.probes)
        file = pq.ParquetFile(track_file)

        def build() -> Recommender:
            """Streamed in record batches: the audio embeddings (1 KB a track) are never all in
            memory, only the terms (F floats a track) are."""
            terms = np.empty((file.metadata.num_rows, self.user_aware.fused.out_features), np.float32)
            ids, n = [], 0
            for batch in file.iter_batches(batch_size=65_536, columns=["track_id", "audio_embedding"]):
                batch = batch.filter(batch.column("audio_embedding").is_valid())
                terms[n:n + batch.num_rows] = track_terms(self.user_aware, _matrix(batch.column("audio_embedding"), 256))
                ids.append(batch.column("track_id").cast("string"))
                n += batch.num_rows
            return Recommender.indexed(self.user_aware, pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
                                       terms[:n], self._user_sample(), cfg)

        if file.metadata.num_rows <= cfg.exhaustive_max:
            return build()
        key = hashlib.sha256(json.dumps([version, self._user_aware_digest, vars(cfg)]).encode()).hexdigest()[:16]
        cache = self.root / self.params.paths.serving_cache
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (cache / key).exists():
                with atomic_dir(cache / key) as staging:
                    build().save(staging)
                for old in cache.iterdir():        # a worker still mapping one keeps its inode
                    if old.is_dir() and old.name != key:
                        shutil.rmtree(old, ignore_errors=True)
        return Recommender.load(cache / key)

    def _user_sample(self, rows: int = 20_000) -> np.ndarray:
        """The terms of the users in the last row groups of the published history (at most
        ``rows``): what the retrieval prototypes are clustered from."""
        import pyarrow.parquet as pq

        history = pq.ParquetFile(offline_file(self.offline_dir, "user_history"))
        groups, n = [], 0
        for g in range(history.num_row_groups - 1, -1, -1):
            if n >= rows:
                break
            groups.append(g)
            n += history.metadata.row_group(g).num_rows
        if not groups:
            return np.zeros((0, self.user_aware.fused.out_features), np.float32)
        return self.user_terms(history.read_row_groups(groups).to_pandas().tail(rows))

    def refresh(self) -> bool:
        """Swap in the catalogue of a newer publication of this service's model (checked at most
        every ``reload_s``); requests in flight keep the one they started with. A publication of
        another model's features is left to the service of that model (the registry watcher).
        True if it changed."""
        from ctxtag.platform.feature_store import published

        if time.monotonic() - self._checked < self.params.serving.reload_s or not self._lock.acquire(blocking=False):
            return False
        try:
            self._checked = time.monotonic()
            stamp = published(self.feast_dir)
            if stamp is None or stamp["version"] == self.catalogue.version or \
                    stamp.get("model") != self.champions["context"]:
                return False
            # a shared (SQL) registry's cache may predate the new version's views for up to its
            # TTL: Feast would not know the listening view the new catalogue names
            self.store.refresh_registry()
            self.catalogue = self._load_catalogue(stamp)
            return True
        finally:
            self._lock.release()

    def _listening_indexes(self, listening: dict | None) -> dict[str, tuple[list[str], object]] | None:
        """The new releases' (cold_start) listening embeddings of the published embeddings version,
        indexed for cosine search. None when none is published."""
        import pyarrow.parquet as pq

        from ctxtag.serving import ann

        if listening is None:
            return None
        path = self.feast_dir / listening["views"]["track"][1]
        table = pq.read_table(path, columns=["track_id", "listening_embedding", "cold_start"])
        table = table.filter(table.column("listening_embedding").is_valid())
        new = table.filter(table.column("cold_start").fill_null(False))
        cfg = self.params.embeddings
        return {"new": ([str(t) for t in new.column("track_id").to_pylist()],
                        ann.build(_matrix(new.column("listening_embedding"), cfg.dim), cfg.ann_min_tracks, cfg.ann_m,
                                  cfg.ann_ef_search))}

    def _champion(self):
        """The registry's @champion, waveform in (its front-end and CNN), from its checked
        checkpoint (never a pickle)."""
        from ctxtag.platform.registry import champion_checkpoint
        from ctxtag.tagger.inference import load_tagger

        path, version = champion_checkpoint(self.params, self.root)
        return load_tagger(path)[0], version

    # --- audio -> contexts (the champion CNN) ---------------------------------------------------
    def audio_contexts(self, clip: np.ndarray) -> Ranked:
        probs = clip_probabilities(self.tagger, clip)
        if "tagger" in self.shadows:
            self.shadows["tagger"].submit(clip, probs)
        return Ranked(list(self.params.contexts), probs)

    # --- (user, device, network, time) -> contexts (situational GBT) ----------------------------
    def _blocks(self, columns: dict) -> dict[str, np.ndarray]:
        p = self.params
        return blocks(columns, p.contexts, p.logs.devices, p.logs.networks, p.logs.genders, p.user_models.history_dim)

    def situation_contexts(self, user_id: str, device: str, network: str, when: datetime,
                           age: float | None = None, gender: str | None = None) -> Ranked:
        """``when``: the listener's local time with its UTC offset (its wall clock is the local hour)."""
        columns = situation_columns(self.user_features(user_id), device, network, when, age, gender)
        return self.contexts_of(self._blocks(columns))

    def contexts_of(self, x: dict[str, np.ndarray]) -> Ranked:
        """The situational model's contexts for one row of feature blocks."""
        from ctxtag.context import situational

        probs = situational.predict(self.situational, x, len(self.params.contexts))[0]
        if "context" in self.shadows:
            self.shadows["context"].submit(x, probs)
        return Ranked(list(self.params.contexts), probs)

    # --- user + context -> tracks (user-aware tagger over the catalogue) ------------------------
    def user_terms(self, columns) -> np.ndarray:
        return user_terms(self.user_aware, self._blocks(columns))

    def recommend(self, user_id: str, context: str, k: int) -> Ranked:
        catalogue = self.catalogue                                   # one version for the whole request
        user_term = self.user_terms(self.user_features(user_id))[0]
        ids, scores = catalogue.tracks.recommend(user_term, self.params.contexts.index(context), k)
        return Ranked(ids, scores, catalogue.version, catalogue.model)

    # --- user -> new releases (listening embeddings, cosine) ---------------------------------------
    def recommend_new_releases(self, user_id: str, k: int) -> Ranked:
        """The k new releases whose AE is closest (cosine) to the user's UE."""
        catalogue = self.catalogue                              # one version for the whole request
        ue = self._online(lambda: self.store.get_online_features(
            features=[f"{catalogue.listening_view}:listening_embedding"], entity_rows=[{"user_id": user_id}]
        ).to_dict())["listening_embedding"][0]
        if ue is None:
            raise UnknownUser(user_id)
        ids, index = catalogue.listening["new"]
        scores, idx = index.search(np.asarray(ue, dtype=np.float32)[None], k)
        return Ranked([ids[i] for i in idx[0]], scores[0])
