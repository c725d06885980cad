"""The Python API: the served models in another program's process, one call each.

    import ctxtag
    ctxtag.tag("song.mp3")                                   # {"party": 0.91, "dance": 0.84, ...}
    ctxtag.contexts_for("u0007", "phone", "cellular", "2026-02-06T22:30:00+01:00")

``tag`` runs the registry's ``@champion`` tagger (what `ctxtag serve` answers with), so it needs
only a trained, promoted model; ``contexts_for`` is the API's /contexts: the situational model of
``serving.split`` on the user's features in the online store, so it needs `ctxtag publish-features`
too. Both read the project's params (``project`` / ``params_file``) and registry (the project's,
or $MLFLOW_TRACKING_URI's), load once per project and answer from memory after. Inputs are checked
by the HTTP API's rules: a bad device or a timestamp without offset is a ValueError naming the
field and the reason. A process that must follow later promotions calls ``reload()`` (the HTTP API
rereads the registry on its own).
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=4)
def _tagger(project: Path, params_file: str):
    from ctxtag.config import AudioConfig, load_params
    from ctxtag.platform.registry import champion_checkpoint
    from ctxtag.tagger.inference import load_tagger

    params = load_params(project / params_file)
    path, version = champion_checkpoint(params, project)
    tagger, meta = load_tagger(path)
    return tagger, AudioConfig(**meta["audio"]), list(meta["contexts"]), version, params.tagging


@functools.lru_cache(maxsize=4)
def _service(project: Path, params_file: str, online: str, redis_url: str, registry: str | None):
    from ctxtag.config import load_params
    from ctxtag.serving.api import request_models
    from ctxtag.serving.service import Service

    params = load_params(project / params_file)
    situation, _ = request_models(params)
    return Service(params, project, online=online, redis_url=redis_url, registry=registry), situation


def _as_dict(ranked, top: int | None) -> dict[str, float]:
    """The API's ranking (Ranked.top: stable order, 5 decimals) as {context: probability}."""
    return {r["name"]: r["score"] for r in ranked.top(len(ranked.names) if top is None else top)}


def tag(audio: str | Path | np.ndarray, top: int | None = None, project: str | Path = ".",
        params_file: str = "params.yaml", *, track: bool = False) -> dict[str, float]:
    """Contexts of a track with their probabilities, most likely first: ``audio`` is a file (wav,
    flac, ogg, mp3) or a mono waveform at the model's sample rate, either cropped as in training
    (the paper's one crop) or, with ``track``, the whole track: the mean over windows of the
    crop's length (params ``tagging``)."""
    from ctxtag.audio.decode import crop, load_clip, load_windows, windows
    from ctxtag.serving.service import Ranked
    from ctxtag.tagger.inference import clip_probabilities, track_probabilities

    tagger, cfg, contexts, _, tagging = _tagger(Path(project).resolve(), params_file)
    if isinstance(audio, np.ndarray):
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"a waveform is one non-empty channel, not shape {wave.shape}")
        if track:
            probs = track_probabilities(tagger, windows(wave[:int(tagging.max_track_s * cfg.sample_rate)], cfg,
                                                        tagging.max_windows))
        else:
            probs = clip_probabilities(tagger, crop(wave, cfg))
    elif track:                                      # AudioError (a ValueError) names the file
        probs = track_probabilities(tagger, load_windows(Path(audio), cfg, tagging.max_windows, tagging.max_track_s))
    else:
        probs = clip_probabilities(tagger, load_clip(Path(audio), cfg))
    return _as_dict(Ranked(contexts, probs), top)


def tagger_version(project: str | Path = ".", params_file: str = "params.yaml") -> str:
    """The registered model ``tag`` answers with: "name/version" (loaded on the first call)."""
    return _tagger(Path(project).resolve(), params_file)[3]


def contexts_for(user: str, device: str, network: str = "wifi", when: datetime | str | None = None,
                 age: float | None = None, gender: str | None = None, top: int | None = None,
                 project: str | Path = ".", params_file: str = "params.yaml", online: str = "sqlite",
                 redis_url: str = "localhost:6379", registry: str | None = None) -> dict[str, float]:
    """Contexts a user is likely in, given device, network and local time (``when``: a datetime
    with its UTC offset or ISO 8601 text; default now), most likely first. KeyError for a user the
    online store does not know."""
    from pydantic import ValidationError

    from ctxtag.serving.service import UnknownUser

    service, situation = _service(Path(project).resolve(), params_file, online, redis_url, registry)
    when = datetime.now().astimezone() if when is None else when
    try:
        body = situation(user_id=user, device=device, network=network, timestamp=when, age=age, gender=gender)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    try:
        ranked = service.situation_contexts(body.user_id, body.device, body.network, body.timestamp,
                                            body.age, body.gender)
    except UnknownUser:
        raise KeyError(f"unknown user {user!r}: no features in the online store") from None
    return _as_dict(ranked, top)


def reload() -> None:
    """Forget the loaded models: the next call reads the registry's @champion and the store again."""
    _tagger.cache_clear()
    _service.cache_clear()
