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
# request models are local to create_app (they carry the params' devices, contexts, limits)
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from ctxtag.config import Params


def create_app(params: Params, root: Path = Path("."), service=None, online: str = "sqlite",
               redis_url: str = "localhost:6379"):
    import pandas as pd
    from fastapi import FastAPI, File, HTTPException, UploadFile
    from pydantic import BaseModel, Field, field_validator

    from ctxtag.audio.decode import AudioError, load_clip
    from ctxtag.serving.service import Service, UnknownUser

    contexts, devices, networks = list(params.contexts), list(params.logs.devices), list(params.logs.networks)
    state: dict = {"service": service, "error": None}
    allowed = {"device": devices, "network": networks, "gender": list(params.logs.genders)}

    def _one_of(value: str | None, choices: list[str], what: str) -> str | None:
        if value is not None and value not in choices:
            raise ValueError(f"unknown {what} {value!r}; one of {choices}")
        return value

    def svc() -> Service:
        if state["service"] is None:
            try:
                state["service"] = Service(params, root, online, redis_url)
            except Exception as exc:              # reported by /ready, not a crash of the server
                state["error"] = f"{type(exc).__name__}: {exc}"
                raise HTTPException(503, f"not ready: {state['error']}") from exc
        return state["service"]

    class Situation(BaseModel):
        user_id: str = Field(min_length=1, max_length=64)
        device: str = Field(description=f"one of {devices}")
        network: str = Field("wifi", description=f"one of {networks}")
        timestamp: datetime = Field(description="ISO 8601 with a UTC offset: the listener's local time")
        age: float | None = Field(None, ge=params.logs.min_age, le=params.logs.max_age)
        gender: str | None = None

        @field_validator("device", "network", "gender")
        @classmethod
        def _known(cls, v: str | None, info) -> str | None:
            return _one_of(v, allowed[info.field_name], info.field_name)

        @field_validator("timestamp")
        @classmethod
        def _tz(cls, v: datetime) -> datetime:
            if v.tzinfo is None:
                raise ValueError("timestamp needs a UTC offset (e.g. 2026-01-05T08:30:00+01:00): time of day is local")
            return v

    class Recommend(BaseModel):
        user_id: str = Field(min_length=1, max_length=64)
        context: str | None = Field(None, description=f"one of {contexts}; omit to predict it from the situation")
        situation: Situation | None = None
        k: int = Field(10, ge=1, le=500)
        cold_start: bool = Field(False, description="rank new releases (tracks without listening data) by the "
                                 "cosine similarity of the user's and the tracks' listening embeddings "
                                 "(Chen et al.); no context applies")

        @field_validator("context")
        @classmethod
        def _context(cls, v: str | None) -> str | None:
            return _one_of(v, contexts, "context")

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
