"""Feast definitions of the served feature store, loadable with only Feast installed.

The objects are built by ``ctxtag/platform/feast_definitions.py`` (one source: the pipeline
applies the same function), loaded here by file path, so this imports neither the ctxtag package
nor its dependencies: only Feast, PyYAML (a Feast dependency) and the standard library. The
contexts, devices and networks come from params.yaml (``$CTXTAG_PARAMS`` or the project's).

The registry these objects live in is written by `ctxtag publish` alone (``paths.online``), from
the pipeline's offline parquet (``paths.feast``) and the registry's champions, one track view per
served model version (named in the publication's published.json, which this file reads): `feast
apply` / `teardown` from this folder are refused, since they would switch what is served behind
the promotion gate's back. Reading is free: `feast serve`, `feast feature-services list`,
FeatureStore(repo_path=...).get_online_features(...).
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import yaml

_repo = Path(__file__).resolve().parent
_root = _repo.parent
if {"apply", "teardown"} & set(sys.argv[1:]):
    raise SystemExit("feature_repo: the registry is written by `ctxtag publish` (from the registry's champions); "
                     "run that, not `feast apply`")
_spec = importlib.util.spec_from_file_location("ctxtag_feast_definitions", _root / "ctxtag/platform/feast_definitions.py")
_definitions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_definitions)

_params = yaml.safe_load(Path(os.environ.get("CTXTAG_PARAMS") or _root / "params.yaml").read_text())
_logs = _params.get("logs", {})
_paths = _params.get("paths", {})
_online, _offline = _root / _paths.get("online", "data/online"), _root / _paths.get("feast", "data/feast")
try:                                   # the served model versions' views
    _stamp = json.loads((_online / "published.json").read_text())
    _track = {"track_view": _stamp["track_features"]["view"], "track_file": Path(_stamp["track_features"]["file"])}
    if _stamp.get("listening"):
        _track["listening"] = {k: (v, Path(f)) for k, (v, f) in _stamp["listening"]["views"].items()}
except (FileNotFoundError, KeyError, ValueError):
    _track = {}
# the sources are named as the served registry names them: relative to the served folder
(user, track, user_listening_history, user_device_time_profile, track_audio_features,
 user_aware_tagger, situational_model, joint_model, track_contexts, track_listening_embedding, user_listening_embedding,
 cold_start_recommender) = _definitions.definitions(Path(os.path.relpath(_offline, _online)), _params["contexts"],
                                                   _logs["devices"], _logs["networks"], **_track)
