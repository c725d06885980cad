"""Feast objects of the feature repository: entities, feature views, one service per model.

Built by a function of the data folder so the same definitions serve `feast apply` in
feature_repo/ and `ctxtag.platform.feature_store` (the pipeline and tests) alike. The registry
stores each FileSource's path as given: relative to the Feast repo path (Feast resolves it
against that), so a copied or moved project reads its own parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

# the offline parquet of each source, inside the Feast folder (paths.feast)
OFFLINE_SOURCES = ("user_history", "user_device_time", "track_features", "track_embeddings", "user_embeddings")


def offline_file(data_dir: Path, source: str) -> Path:
    if source not in OFFLINE_SOURCES:
        raise ValueError(f"unknown offline source {source!r}; one of {OFFLINE_SOURCES}")
    return Path(data_dir) / f"{source}.parquet"


TRACK_VIEW = "track_audio_features"


LISTENING_VIEWS = {"track": "track_listening_embedding", "user": "user_listening_embedding"}


def definitions(data_dir: Path, contexts: Sequence[str], devices: Sequence[str], networks: Sequence[str],
                embeddings: bool = True, track_view: str = TRACK_VIEW, track_file: Path | None = None,
                listening: dict[str, tuple[str, Path]] | None = None) -> list:
    """``data_dir``: the folder of the offline parquet as the sources name it, relative to the
    Feast repo path (``Path(".")`` when the repo is the data folder itself). ``embeddings``:
    include the listening-embedding views (Chen et al.), whose sources exist once
    `ctxtag embeddings` has run. ``track_view``/``track_file``: the tagger's track features under
    another view name and file (the serving publication's one view per registered model version,
    ctxtag.platform.publication); the feature services name whichever is given, and a client that
    reads through a service gets the same columns whatever the view is called. ``listening``:
    the same for the listening-embedding views, {"track"|"user": (view name, file)}."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Bool, Float32, Int64, String

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
                  description="a listener")
    history = FeatureView(
        name="user_listening_history",
        entities=[user],
        ttl=timedelta(days=365),
        schema=[Field(name="n_streams", dtype=Int64),
                *[Field(name=f"ctx_count_{c}", dtype=Int64) for c in contexts],
                *[Field(name=f"ctx_share_{c}", dtype=Float32) for c in contexts],
                Field(name="top_artists", dtype=Array(String)),
                Field(name="history_embedding", dtype=Array(Float32))],
        source=FileSource(name="user_history_snapshots", path=str(offline_file(data_dir, "user_history")),
                          timestamp_field="event_timestamp"),
        online=True,
        description="streams, per-context counts/shares, top artists, history embedding per daily snapshot",
    )
    device_time = FeatureView(
        name="user_device_time_profile",
        entities=[user],
        ttl=timedelta(days=365),
        schema=[*[Field(name=f"device_share_{d}", dtype=Float32) for d in devices],
                *[Field(name=f"network_share_{n}", dtype=Float32) for n in networks],
                Field(name="hour_dist", dtype=Array(Float32)), Field(name="weekday_dist", dtype=Array(Float32)),
                *[Field(name=n, dtype=Float32) for n in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")]],
        source=FileSource(name="user_device_time_snapshots", path=str(offline_file(data_dir, "user_device_time")),
                          timestamp_field="event_timestamp"),
        online=True,
        description="device/network shares, local hour and weekday distributions, cyclic encodings",
    )
    track = Entity(name="track", join_keys=["track_id"], value_type=ValueType.STRING, description="a track")
    track_audio = FeatureView(
        name=track_view,
        entities=[track],
        ttl=timedelta(days=3650),
        schema=[Field(name="context_probs", dtype=Array(Float32)),
                Field(name="audio_embedding", dtype=Array(Float32)),
                Field(name="tagger", dtype=String)],
        source=FileSource(name="track_audio_snapshots" if track_view == TRACK_VIEW else f"{track_view}_snapshots",
                          path=str(track_file or offline_file(data_dir, "track_features")),
                          timestamp_field="event_timestamp"),
        online=True,
        description="the audio tagger's context probabilities and 256-d embedding of each track; tagger: "
                    "the model that computed them",
    )
    user_aware = FeatureService(name="user_aware_tagger", features=[history, track_audio])
    situational = FeatureService(name="situational_model", features=[history, device_time])
    joint = FeatureService(name="joint_model", features=[history, device_time, track_audio])
    tagged = FeatureService(name="track_contexts", features=[track_audio])
    objects = [user, track, history, device_time, track_audio, user_aware, situational, joint, tagged]
    if not embeddings:
        return objects
    names = {k: (listening or {}).get(k, (v, None)) for k, v in LISTENING_VIEWS.items()}
    track_embedding = FeatureView(
        name=names["track"][0],
        entities=[track],
        ttl=timedelta(days=3650),
        schema=[Field(name="listening_embedding", dtype=Array(Float32)),
                Field(name="cold_start", dtype=Bool),
                Field(name="embedding_model", dtype=String)],
        source=FileSource(name="track_embedding_snapshots" if listening is None else f"{names['track'][0]}_snapshots",
                          path=str(names["track"][1] or offline_file(data_dir, "track_embeddings")),
                          timestamp_field="event_timestamp"),
        online=True,
        description="40-d audio embedding (AE) of each track, learnt from listening data; cold_start: "
                    "the track had no listening data when the model was trained",
    )
    user_embedding = FeatureView(
        name=names["user"][0],
        entities=[user],
        ttl=timedelta(days=365),
        schema=[Field(name="listening_embedding", dtype=Array(Float32))],
        source=FileSource(name="user_embedding_snapshots" if listening is None else f"{names['user'][0]}_snapshots",
                          path=str(names["user"][1] or offline_file(data_dir, "user_embeddings")),
                          timestamp_field="event_timestamp"),
        online=True,
        description="40-d user embedding (UE) from listening history and demographics (user branch)",
    )
    cold_start = FeatureService(name="cold_start_recommender", features=[user_embedding, track_embedding])
    return [*objects, track_embedding, user_embedding, cold_start]
