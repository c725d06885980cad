"""Feast definitions for the `feast` CLI; the objects come from ctxtag.platform.feast_definitions (one source)."""

from pathlib import Path

from ctxtag.config import load_params
from ctxtag.platform.feast_definitions import definitions

_root = Path(__file__).resolve().parents[1]
_params = load_params(_root / "params.yaml")
(user, track, user_listening_history, user_device_time_profile, track_audio_features,
 user_aware_tagger, situational_model, joint_model, track_listening_embedding, user_listening_embedding,
 cold_start_recommender) = definitions(
    _root / "data/feast", _params.contexts, _params.logs.devices, _params.logs.networks)
