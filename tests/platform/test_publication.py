"""`ctxtag publish` for real: the context @champion's track features into the served Feast store
(SQLite here; its registry a file, or the production stack's SQL registry in a real PostgreSQL),
one feature view per registered version, switched in one registry write; read while it
republishes; the API follows a promotion only once its features are published."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ctxtag.platform.feature_store import open_store
from ctxtag.platform.orchestration import in_project
from ctxtag.platform.promotion import PromotionRefused, promote, rollback
from ctxtag.platform.publication import publish, served, view_name
from ctxtag.platform.registry import register_context_model
from ctxtag.serving.api import create_app
from tests.conftest import tagger_champion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(dvc_project, context_champion, tmp_path_factory):
    """A copy of the session's project (its champions and served store included), with a tagger
    champion of its own: what is promoted here is no other test's."""
    proj = tmp_path_factory.mktemp("publication") / "project"
    shutil.copytree(dvc_project, proj, symlinks=True)
    return proj, tagger_champion(proj, context_champion, "pub-tagger")


@pytest.fixture(scope="module")
def sql_project(dvc_project, context_champion, tmp_path_factory, postgres_url):
    """Another copy, its served store's registry in PostgreSQL (published there once first)."""
    proj = tmp_path_factory.mktemp("publication-sql") / "project"
    shutil.copytree(dvc_project, proj, symlinks=True)
    params = tagger_champion(proj, context_champion, "pub-sql-tagger")
    with in_project(proj):
        publish(params, registry=postgres_url)
    return proj, params, postgres_url


def _model_b(proj: Path, params):
    """Another context model: the same user models around the tagger trained without weights."""
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, loss="none"))
    with in_project(proj):
        b = register_context_model(other, why="publication test: B")
    return other, f"{params.registry.context_model_name}/{b['version']}"


def _digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


_READ_LOOP = """
import json, sys, time
from pathlib import Path
from ctxtag.platform.feature_store import open_store

store_dir, registry = sys.argv[1], sys.argv[2] or None
rows = [{"track_id": t} for t in json.loads(sys.stdin.readline())]
store = open_store(Path(store_dir), registry=registry)
while True:
    try:
        started = time.monotonic()
        store.refresh_registry()
        # allow_cache=True, as `feast serve` does: the service and its views from one registry
        # snapshot. Without it a SQL registry gives the service from the database and the views
        # from the cache, and for up to the cache's TTL after a switch they name different
        # versions (Feast: "Feature view ..._1 does not exist").
        service = store.get_feature_service("track_contexts", allow_cache=True)
        # the service's references, not the service: given the object, Feast 0.67 fetches the
        # service from the registry again (_get_features), re-reading a registry file that changed
        # meanwhile, and then names views of one version and features of the other ("Feature
        # view ..._2 does not exist"). The references name one version's views, kept after a switch.
        refs = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features]
        got = store.get_online_features(features=refs, entity_rows=rows).to_dict()
        print(json.dumps({"read": [started, time.monotonic(), got["tagger"]]}), flush=True)
    except Exception as exc:                           # reported by the test
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


class Reader:
    """Another service reading every track through the ``track_contexts`` feature service in a
    loop (its registry re-read before each read), recording which models' rows each read saw.
    A process of its own, as such a service is (not sharing Feast's module-level lookup caches
    with the publisher); its reads are timed with the system-wide monotonic clock, comparable
    with this process's. It reads as the README tells clients to (see _READ_LOOP)."""

    def __init__(self, store_dir: Path, track_ids: list[str], registry: str | None = None):
        self.store_dir, self.track_ids, self.registry = store_dir, track_ids, registry
        self.reads: list[tuple[float, float, list]] = []      # (started, ended, models per track)
        self.errors: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._collect, daemon=True)

    def _collect(self) -> None:
        for line in self._proc.stdout:
            record = json.loads(line)
            if "read" in record:
                self.reads.append(tuple(record["read"]))
            else:
                self.errors.append(record["error"])

    def __enter__(self):
        self._proc = subprocess.Popen([sys.executable, "-c", _READ_LOOP, str(self.store_dir), self.registry or ""],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._proc.stdin.write(json.dumps(self.track_ids) + "\n")
        self._proc.stdin.close()
        self._thread.start()
        deadline = time.monotonic() + 90                # Feast's imports first
        while not self.reads and not self.errors and time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.05)
        assert self.reads or self.errors, "the reader process made no read"
        return self

    def __exit__(self, *exc) -> None:
        n = len(self.reads)
        deadline = time.monotonic() + 60
        while len(self.reads) < n + 2 and not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)                           # reads after the switch too
        self._proc.kill()
        self._proc.wait(timeout=60)
        self._thread.join(timeout=60)


def _republish_while_reading(proj, params, ids, old: str, new: str, registry: str | None = None) -> dict:
    with Reader(proj / params.paths.online, ids, registry) as reader:
        begin = time.monotonic()
        with in_project(proj):
            stats = publish(params, registry=registry)
        end = time.monotonic()
    assert not reader.errors, reader.errors[:3]
    seen = [set(values) for _, _, values in reader.reads]
    # every read: one model's rows for every track, never a mix, and never a gap
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) != 1][:3]
    order = [next(iter(s)) for s in seen]
    assert order[0] == old and order[-1] == new and set(order) == {old, new}
    assert order == sorted(order, key=lambda m: m == new)      # old ... old new ... new: no going back
    # a read that overlaps the republish (a rollback's is the switch alone, shorter than one read)
    assert any(s <= end and e >= begin for s, e, _ in reader.reads), "no read happened during the republish"
    return stats


@pytest.mark.parametrize("registry", ["file", "postgres"])
def test_a_promotion_republishes_every_track_at_once_and_a_rollback_restores_it(request, registry):
    proj, params, url = (*request.getfixturevalue("project"), None) if registry == "file" else \
        request.getfixturevalue("sql_project")
    ids = pd.read_csv(proj / params.paths.tracks, dtype=str)["track_id"].drop_duplicates().tolist()
    a = served(params, proj)["model"]
    assert a == f"{params.registry.context_model_name}/1"
    listening = served(params, proj)["listening"]          # the embeddings family's champion, versioned too
    assert listening["model"] == f"{params.registry.embeddings_model_name}/1"
    assert listening["views"]["user"][0] == view_name(listening["model"], "user_listening_embedding")
    pipeline = {d: _digests(proj / d) for d in (params.paths.feast, params.paths.track_features)}
    other, b = _model_b(proj, params)
    with in_project(proj):
        promote(other, version=b.rsplit("/", 1)[1], family="context", force=True, why="publication test: serve B")
    stats = _republish_while_reading(proj, params, ids, a, b, url)
    # B's view was materialised beside A's; the user views were not touched (their parquet did not change)
    assert stats["materialised"] == [view_name(b)] and stats["model"] == b
    stamp = served(params, proj)
    assert stamp["model"] == b and set(stamp["views"]) == {view_name(a), view_name(b)}
    track_file = proj / params.paths.online / stamp["track_features"]["file"]
    assert set(pd.read_parquet(track_file, columns=["tagger"])["tagger"]) == {b}

    with in_project(proj):
        rollback(params, family="context", why="publication test: back to A")
    stats = _republish_while_reading(proj, params, ids, b, a, url)
    assert stats["materialised"] == [] and stats["reused_features"]    # A's view was kept: one switch
    with in_project(proj):
        again = publish(params, registry=url)
    assert not again["changed"] and again["version"] == served(params, proj)["version"]

    # a third version (other user models, the same tagger: its partitions are reused): B's view,
    # neither served nor the one before, is dropped with its file; A's stays for a rollback
    cold = dataclasses.replace(params, serving=dataclasses.replace(params.serving, split="cold_user"))
    with in_project(proj):
        c = f"{params.registry.context_model_name}/{register_context_model(cold, why='publication test: C')['version']}"
        promote(cold, version=c.rsplit("/", 1)[1], family="context", force=True, why="publication test: serve C")
        stats = publish(params, registry=url)
    assert stats["model"] == c and stats["materialised"] == [view_name(c)] and stats["dropped"] == [view_name(b)]
    views = {v.name for v in open_store(proj / params.paths.online, registry=url).list_feature_views()}
    assert {view_name(a), view_name(c)} <= views and view_name(b) not in views
    assert not (proj / params.paths.online / "track_features" / f"{view_name(b)}.parquet").exists()
    with in_project(proj):
        rollback(params, family="context", why="publication test: back to A")
        assert publish(params, registry=url)["materialised"] == []
    # nothing of it went into the pipeline's (DVC's) outputs
    assert {d: _digests(proj / d) for d in pipeline} == pipeline


def test_the_api_follows_a_promotion_once_its_features_are_published(project):
    """A answers; B refused by the gate (a real run of it, with a margin no model meets): nothing
    changes, republishing included; B force-promoted: A's user models and features keep answering
    /recommend (B's features are not published yet, and a user model never meets another tagger's
    embeddings); published: B answers and says so; rolled back and republished: A's answers to the
    last digit."""
    proj, params = project
    params = dataclasses.replace(params, serving=dataclasses.replace(params.serving, reload_s=0.1))
    hist = pd.read_parquet(proj / params.paths.feast / "user_history.parquet")
    body = {"user_id": str(hist.sort_values("n_streams")["user_id"].iloc[-1]), "context": "party", "k": 10}
    a = served(params, proj)["model"]
    other, b = _model_b(proj, params)
    with TestClient(create_app(params, proj)) as c:

        def answer() -> dict:
            r = c.post("/recommend", json=body)
            assert r.status_code == 200, r.text
            return {k: r.json()[k] for k in ("model", "features_model", "tracks")}

        def wait_for(model: str, timeout_s: float = 90.0) -> dict:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                got = answer()
                if got["model"] == model:
                    return got
                time.sleep(0.1)
            pytest.fail(f"the API did not move to {model} in {timeout_s} s")

        first = answer()
        assert first["model"] == first["features_model"] == a
        strict = dataclasses.replace(other, registry=dataclasses.replace(other.registry, max_context_drop=-1.0))
        with in_project(proj):
            with pytest.raises(PromotionRefused):
                promote(strict, version=b.rsplit("/", 1)[1], family="context", why="api test: refused")
            assert not publish(params)["changed"]
        time.sleep(0.5)
        assert answer() == first
        with in_project(proj):
            promote(other, version=b.rsplit("/", 1)[1], family="context", force=True, why="api follows B")
        time.sleep(1.0)                                 # the watcher has seen it; B is not published
        assert answer() == first
        assert c.get("/version").json()["feature_models"]["track_audio_features"] == a
        with in_project(proj):
            publish(params)
        got = wait_for(b)
        assert got["features_model"] == b and got["tracks"] != first["tracks"]
        assert c.get("/version").json()["feature_models"]["track_audio_features"] == b
        with in_project(proj):
            rollback(params, family="context", why="api follows A again")
            publish(params)
        assert wait_for(a) == first
