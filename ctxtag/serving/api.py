"""The HTTP API (FastAPI, OpenAPI at /docs and /openapi.json) over ctxtag.serving.service.

    GET  /health                liveness: the process answers
    GET  /ready                 readiness: models loaded, features published (their version), and
                                the online store answering and holding them
    POST /predict/audio         contexts of an uploaded audio file (the @champion tagger)
    POST /contexts              contexts of a (user, device, network, time) (situational model)
    POST /recommend             tracks for a user in a chosen context, or in the one predicted
                                from (device, network, time); or, with cold_start, new releases
                                ranked by the cosine similarity of the listening embeddings

Run it: `ctxtag serve` (uvicorn on 127.0.0.1:8000; ``--workers N`` processes with a socket each,
ctxtag.serving.workers). The service is built once per process at start-up. Invalid input gets a
4xx naming the field and the reason (never a 500, and never the whole offending value echoed
back); a body over its limit gets 413 before it is read; a store that does not answer within
``serving.store_timeout_ms`` gets 503 with the reason. With API keys in ``$CTXTAG_API_KEYS``
(``serving.api_keys_env``) every route but /health and /ready needs ``Authorization: Bearer <key>``
and each key is rate-limited (429 with Retry-After).
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at runtime, and the
# request models are built per params (they carry the params' devices, contexts, limits)
import gc
import os
import re
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

from starlette.exceptions import HTTPException as StarletteHTTPException

from ctxtag.config import Params

OPEN_ROUTES = ("/health", "/ready", "/docs", "/openapi.json")
RETRY_BUILD_S = 10.0          # a service that failed to build (no pipeline yet) is retried this often


def api_keys(params: Params) -> set[str]:
    return {k.strip() for k in os.environ.get(params.serving.api_keys_env, "").split(",") if k.strip()}


def app_from_env():
    """The app of a `ctxtag serve` worker process: params from $CTXTAG_PARAMS, the project root
    the working directory, the online store from $CTXTAG_ONLINE_STORE / $CTXTAG_REDIS_URL and
    its registry from $CTXTAG_FEAST_REGISTRY (a shared SQL registry; default the store's file)."""
    from ctxtag.config import load_params

    return create_app(load_params(os.environ.get("CTXTAG_PARAMS", "params.yaml")), Path("."),
                      online=os.environ.get("CTXTAG_ONLINE_STORE", "sqlite"),
                      redis_url=os.environ.get("CTXTAG_REDIS_URL", "localhost:6379"),
                      registry=os.environ.get("CTXTAG_FEAST_REGISTRY") or None, freeze_gc=True)


def create_app(params: Params, root: Path = Path("."), service=None, online: str = "sqlite",
               redis_url: str = "localhost:6379", freeze_gc: bool = False, registry: str | None = None):
    """``freeze_gc``: the process is this app's alone (a `ctxtag serve` worker), so everything alive
    once the service is built lives as long as the process and is frozen out of the collector."""
    from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from ctxtag.audio.decode import AudioError, load_clip
    from ctxtag.serving.service import Service, StoreUnavailable, UnknownUser

    contexts = list(params.contexts)
    cfg = params.serving
    state: dict = {"service": service, "error": None, "tried": 0.0, "follow_failed": 0.0}
    build_lock = threading.Lock()

    def build() -> None:
        """Build the service (start-up, or a later retry while the pipeline had not run yet);
        one build at a time, whatever the number of concurrent requests."""
        with build_lock:
            if state["service"] is not None or time.monotonic() - state["tried"] < RETRY_BUILD_S:
                return
            state["tried"] = time.monotonic()
            try:
                state["service"], state["error"] = Service(params, root, online, redis_url, registry), None
            except Exception as exc:              # noqa: BLE001 - reported by /ready, not a crash
                state["error"] = f"{type(exc).__name__}: {exc}"

    def follow(s: Service) -> Service:
        """A @champion moved (promotion, forced promotion, rollback; the service's watcher saw it):
        the service of the new champions, built by one request while the others go on with the
        old one, then swapped whole — a request sees one set of models from start to end. A build
        that fails keeps the old service answering (retried at most every RETRY_BUILD_S)."""
        if not s.moved.is_set() or time.monotonic() - state["follow_failed"] < RETRY_BUILD_S \
                or not build_lock.acquire(blocking=False):
            return s
        try:
            state["service"], state["error"] = Service(params, root, online, redis_url, registry), None
            s.close(wait=False)                   # its watcher has ended; its shadows write and stop
        except Exception as exc:                  # noqa: BLE001 - the old models keep answering
            state["error"], state["follow_failed"] = f"{type(exc).__name__}: {exc}", time.monotonic()
        finally:
            build_lock.release()
        return state["service"]

    def svc() -> Service:
        if state["service"] is None:
            build()
        s = state["service"]
        if s is None:
            raise HTTPException(503, f"not ready: {state['error']}")
        s = follow(s)                             # promoted or rolled back: the new champions
        s.refresh()                               # republished features: swap the catalogue
        return s

    @asynccontextmanager
    async def lifespan(_app):
        import anyio.to_thread

        # the route handlers are CPU-bound Python: more threads than cores only fight over the GIL
        # (16 concurrent requests in 16 threads: 114 req/s, in one: 206), so a worker runs them in
        # ``serving.threads`` threads and queues the rest; /health is async and never waits
        anyio.to_thread.current_default_thread_limiter().total_tokens = cfg.threads
        if state["service"] is None:
            build()
        if freeze_gc:
            # the models, Feast and MLflow leave ~10^6 long-lived objects: out of the collector's
            # sight, a full collection no longer walks them all in the middle of a request (closed
            # loop 772 -> 1,600 req/s on 2 workers). Not in a shared process (tests): what it
            # frees later in reference cycles would wait for gc.unfreeze
            gc.collect()
            gc.freeze()
        yield
        if state["service"] is not None:
            state["service"].close()

    Situation, Recommend = request_models(params)
    keys = api_keys(params)
    limiter = RateLimiter(cfg.rate_per_s, cfg.burst)
    bearer = HTTPBearer(auto_error=False)

    # async: a check this small runs on the event loop (a sync dependency costs a thread hop per request)
    async def authorised(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str | None:
        if not keys or request.url.path in OPEN_ROUTES:     # probes stay open to the load balancer
            return None
        if credentials is None or credentials.credentials not in keys:
            raise HTTPException(401, "missing or unknown API key (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        wait = limiter.take(credentials.credentials)
        if wait > 0:
            raise HTTPException(429, f"rate limit of {cfg.rate_per_s:g} requests/s per key",
                                headers={"Retry-After": str(max(1, round(wait)))})
        return credentials.credentials

    app = FastAPI(title="ctxtag", version="1.0", lifespan=lifespan, dependencies=[Depends(authorised)],
                  description="Listening contexts for tracks, users, devices and times of day.")
    app.state.ctxtag = state                      # the built service, for an app that shares it
    app.add_middleware(BodyLimit, default=cfg.max_body_kb * 1024,
                       limits={"/predict/audio": cfg.max_upload_mb * 2**20 + 64 * 1024})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        # the field and the reason; a long input is cut, never echoed whole
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": list(e.get("loc", ())), "msg": _cut(str(e.get("msg", ""))), "type": e.get("type"),
             "input": _cut(repr(e.get("input")))} for e in exc.errors()[:20]]})

    @app.exception_handler(StoreUnavailable)
    async def store_down(_request: Request, exc: StoreUnavailable):
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict:
        s = svc()
        cat = s.catalogue
        if len(cat.tracks) == 0:
            raise HTTPException(503, "not ready: no track features published (run `ctxtag publish`)")
        s.check_store()
        listening = {name: {"tracks": len(index), "index": index.kind} for name, (_, index) in cat.listening.items()} \
            if cat.listening else None
        return {"status": "ready", "champion": s.tagger_version, "features": cat.version, "tracks": len(cat.tracks),
                "recommend": cat.tracks.kind, "user_models": params.serving.split, "listening_embeddings": listening}

    @app.get("/version")
    def version() -> dict:
        """Every model that answers, and the feature publication the online store serves."""
        s = svc()
        return {"models": s.model_versions, "alias": "champion", "features": s.catalogue.version,
                "feature_models": {"track_audio_features": s.catalogue.model,
                                   "track_listening_embedding": s.catalogue.listening_model},
                "online_store": online}

    @app.post("/predict/audio")
    def predict_audio(file: Annotated[UploadFile, File(description="wav, flac, ogg or mp3")], top: int = 5) -> dict:
        s = svc()
        name = _cut(file.filename or "upload", 120)
        data = file.file.read(cfg.max_upload_mb * 2**20 + 1)
        if len(data) > cfg.max_upload_mb * 2**20:
            raise HTTPException(413, f"{name}: larger than {cfg.max_upload_mb} MB")
        if not data:
            raise HTTPException(422, f"{name}: empty upload")
        # the suffix only helps the decoder guess; a name never reaches the file system otherwise
        with tempfile.NamedTemporaryFile(suffix=_safe_suffix(file.filename)) as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                clip = load_clip(tmp.name, params.audio)
            except AudioError as exc:
                raise HTTPException(415, f"{name}: {exc.reason.replace(tmp.name, 'upload')}") from exc
        return {"file": name, "model": s.tagger_version,
                "contexts": [{"context": r["name"], "probability": r["score"]}
                             for r in s.audio_contexts(clip).top(min(max(top, 1), len(contexts)))]}

    def _situation(s, body: Situation):
        try:
            return s.situation_contexts(body.user_id, body.device, body.network, body.timestamp,
                                        body.age, body.gender)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no features in the online store") from exc

    @app.post("/contexts")
    def contexts_of(body: Situation, top: int = 3) -> dict:
        s = svc()
        ranked = _situation(s, body)
        return {"user_id": body.user_id, "model": s.model_versions["situational"],
                "contexts": [{"context": r["name"], "probability": r["score"]}
                             for r in ranked.top(min(max(top, 1), len(contexts)))]}

    @app.post("/recommend")
    def recommend(body: Recommend) -> dict:
        s = svc()
        if body.cold_start:
            return _cold_start(s, body)
        context, predicted = body.context, False
        if context is None:
            if body.situation is None:
                raise HTTPException(422, "give a context, or a situation (device, network, timestamp) to predict it")
            if body.situation.user_id != body.user_id:
                raise HTTPException(422, "situation.user_id differs from user_id")
            context, predicted = _situation(s, body.situation).top(1)[0]["name"], True
        try:
            ranked = s.recommend(body.user_id, context, body.k)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no features in the online store") from exc
        return {"user_id": body.user_id, "context": context, "context_predicted": predicted,
                "model": s.model_versions["user_aware"], "features": ranked.version,
                "features_model": ranked.model,
                "tracks": [{"track_id": r["name"], "score": r["score"]} for r in ranked.top(body.k)]}

    def _cold_start(s, body: Recommend) -> dict:
        if body.context is not None or body.situation is not None:
            raise HTTPException(422, "cold_start ranks new releases by listening embeddings: give no context or situation")
        if s.catalogue.listening is None:
            raise HTTPException(503, "listening embeddings are not published: register and promote them "
                                     "(`ctxtag release`), then `ctxtag publish`")
        try:
            ranked = s.recommend_new_releases(body.user_id, body.k)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no listening embedding in the online store") from exc
        return {"user_id": body.user_id, "context": None, "context_predicted": False, "cold_start": True,
                "index": s.catalogue.listening["new"][1].kind,
                "tracks": [{"track_id": r["name"], "score": r["score"]} for r in ranked.top(body.k)]}

    return app


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _safe_suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix if filename and "\x00" not in filename else ""
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""


class RateLimiter:
    """A token bucket per key: ``rate`` per second sustained, ``burst`` at once (per process)."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a request may go now, else the seconds until it may."""
        with self.lock:
            now = time.monotonic()
            tokens, last = self.buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit — by Content-Length before anything
    is read, and by counting for a chunked body, before the route reads past the limit."""

    def __init__(self, app, default: int, limits: dict[str, int]):
        self.app, self.default, self.limits = app, default, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(send, limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, limit)


class _TooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on as 413 (not 'error parsing')."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


async def _too_large(send, limit: int) -> None:
    import json

    body = json.dumps({"detail": _TooLarge(limit).detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def request_models(params: Params, clock=None) -> tuple[type, type]:
    """The request bodies (Situation, Recommend). Their listening-log fields are checked by the
    rule table that ingestion and the logs gate apply (ctxtag.listening.rules): a situation the
    lake would quarantine gets 422 naming the field, with the table's reason. ``clock`` gives
    "now" for the no-future-timestamp rule (the wall clock unless a test fixes it)."""
    import pandas as pd
    from pydantic import BaseModel, Field, ValidationInfo, field_validator

    from ctxtag.listening import rules

    table = rules.log_rules(params.logs, params.contexts)
    age_range = rules.find(table, "age", "between")
    max_id = int(rules.find(table, "user_id", "max_length").high)

    def one_of(column: str) -> str:
        return f"one of {list(rules.find(table, column, 'in_set').allowed)}"

    def by_table(value, info: ValidationInfo):
        now = clock() if clock else pd.Timestamp.now(tz="UTC")
        normal, reason = rules.check_value(table, info.field_name, value, now)
        if reason:
            raise ValueError(reason)
        return normal if isinstance(value, str) else value       # stripped, categories lower-cased

    class Situation(BaseModel):
        user_id: str = Field(min_length=1, max_length=max_id)
        device: str = Field(description=one_of("device"))
        # the API's one leniency: no network means wifi (a filled-in default, which meets the table)
        network: str = Field("wifi", description=one_of("network"))
        timestamp: datetime = Field(description="ISO 8601 with a UTC offset: the listener's local time")
        age: float | None = Field(None, ge=age_range.low, le=age_range.high)
        gender: str | None = Field(None, description=one_of("gender"))

        @field_validator("user_id", "device", "network", "timestamp", "age", "gender", mode="before")
        @classmethod
        def _by_table(cls, v, info: ValidationInfo):
            return by_table(v, info)

    class Recommend(BaseModel):
        user_id: str = Field(min_length=1, max_length=max_id)
        context: str | None = Field(None, description=f"{one_of('context')}; omit to predict it from the situation")
        situation: Situation | None = None
        k: int = Field(10, ge=1, le=500)
        cold_start: bool = Field(False, description="rank new releases (tracks without listening data) by the "
                                 "cosine similarity of the user's and the tracks' listening embeddings "
                                 "(Chen et al.); no context applies")

        @field_validator("user_id", "context", mode="before")
        @classmethod
        def _by_table(cls, v, info: ValidationInfo):
            return by_table(v, info)

    return Situation, Recommend
