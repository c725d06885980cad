"""The HTTP API (FastAPI, OpenAPI at /docs and /openapi.json) over ctxtag.serving.service.

    GET  /health                liveness: the process answers
    GET  /ready                 readiness: champion model, user models and Feast store loaded
    POST /predict/audio         contexts of an uploaded audio file (the @champion tagger)
    POST /contexts              contexts of a (user, device, network, time) (situational model)
    POST /recommend             tracks for a user in a chosen context, or in the one predicted
                                from (device, network, time); or, with cold_start, new releases
                                ranked by the cosine similarity of the listening embeddings

Run it: `ctxtag serve` (uvicorn on 127.0.0.1:8000). Invalid input gets a 4xx naming the field
and the reason; a model that is not loaded gets 503 from /ready and the model routes.
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at runtime, and the
# request models are built per params (they carry the params' devices, contexts, limits)
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from ctxtag.config import Params


def create_app(params: Params, root: Path = Path("."), service=None, online: str = "sqlite",
               redis_url: str = "localhost:6379"):
    import pandas as pd
    from fastapi import FastAPI, File, HTTPException, UploadFile

    from ctxtag.audio.decode import AudioError, load_clip
    from ctxtag.serving.service import Service, UnknownUser

    contexts = list(params.contexts)
    state: dict = {"service": service, "error": None}

    def svc() -> Service:
        if state["service"] is None:
            try:
                state["service"] = Service(params, root, online, redis_url)
            except Exception as exc:              # reported by /ready, not a crash of the server
                state["error"] = f"{type(exc).__name__}: {exc}"
                raise HTTPException(503, f"not ready: {state['error']}") from exc
        return state["service"]

    Situation, Recommend = request_models(params)

    app = FastAPI(title="ctxtag", version="1.0",
                  description="Listening contexts for tracks, users, devices and times of day.")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict:
        s = svc()
        listening = {name: {"tracks": len(index), "index": index.kind} for name, (_, index) in s.listening.items()} \
            if s.listening else None
        return {"status": "ready", "champion": s.tagger_version, "tracks": len(s.tracks),
                "user_models": params.serving.split, "listening_embeddings": listening}

    @app.post("/predict/audio")
    def predict_audio(file: Annotated[UploadFile, File(description="wav, flac, ogg or mp3")], top: int = 5) -> dict:
        s = svc()
        data = file.file.read(params.serving.max_upload_mb * 2**20 + 1)
        if len(data) > params.serving.max_upload_mb * 2**20:
            raise HTTPException(413, f"{file.filename}: larger than {params.serving.max_upload_mb} MB")
        if not data:
            raise HTTPException(422, f"{file.filename}: empty upload")
        with tempfile.NamedTemporaryFile(suffix=Path(file.filename or "x").suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                clip = load_clip(tmp.name, params.audio)
            except AudioError as exc:
                raise HTTPException(415, f"{file.filename}: {exc.reason.replace(tmp.name, 'upload')}") from exc
        return {"file": file.filename, "model": s.tagger_version,
                "contexts": [{"context": r["name"], "probability": r["score"]}
                             for r in s.audio_contexts(clip).top(min(max(top, 1), len(contexts)))]}

    def _situation(s, body: Situation):
        try:
            return s.situation_contexts(body.user_id, body.device, body.network, pd.Timestamp(body.timestamp),
                                        body.age, body.gender)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no features in the online store") from exc

    @app.post("/contexts")
    def contexts_of(body: Situation, top: int = 3) -> dict:
        ranked = _situation(svc(), body)
        return {"user_id": body.user_id, "contexts": [{"context": r["name"], "probability": r["score"]}
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
            ranked = s.recommend(body.user_id, context)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no features in the online store") from exc
        return {"user_id": body.user_id, "context": context, "context_predicted": predicted,
                "tracks": [{"track_id": r["name"], "score": r["score"]} for r in ranked.top(body.k)]}

    def _cold_start(s, body: Recommend) -> dict:
        if body.context is not None or body.situation is not None:
            raise HTTPException(422, "cold_start ranks new releases by listening embeddings: give no context or situation")
        if s.listening is None:
            raise HTTPException(503, "listening embeddings are not published: run `ctxtag embeddings` and "
                                     "`ctxtag publish-features`")
        try:
            ranked = s.recommend_new_releases(body.user_id, body.k)
        except UnknownUser as exc:
            raise HTTPException(404, f"unknown user {body.user_id!r}: no listening embedding in the online store") from exc
        return {"user_id": body.user_id, "context": None, "context_predicted": False, "cold_start": True,
                "index": s.listening["new"][1].kind,
                "tracks": [{"track_id": r["name"], "score": r["score"]} for r in ranked.top(body.k)]}

    return app


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
