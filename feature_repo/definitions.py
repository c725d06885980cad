"""Feast definitions of the pipeline's feature store, loadable with only Feast installed.

The objects are built by ``ctxtag/platform/feast_definitions.py`` (one source: the pipeline
applies the same function), loaded here by file path, so this imports neither the ctxtag package
nor its dependencies: only Feast, PyYAML (a Feast dependency) and the standard library. The
contexts, devices and networks come from params.yaml (``$CTXTAG_PARAMS`` or the project's).

The registry these objects live in is the output of the DVC stage publish_features, which
applies and materialises them: `feast apply` / `teardown` from this folder are refused, since
they would rewrite that output behind DVC's back — change ``feast_definitions.py`` and run
`dvc repro publish_features` (or `ctxtag publish-features`). Reading is free: `feast serve`,
`feast feature-services list`, FeatureStore(repo_path=...).get_online_features(...).
"""

import importlib.util
import os
import sys
from pathlib import Path

import yaml

_repo = Path(__file__).resolve().parent
_root = _repo.parent
if {"apply", "teardown"} & set(sys.argv[1:]):
    raise SystemExit("feature_repo: the registry is the output of the DVC stage publish_features; apply it with "
                     "`dvc repro publish_features` (or `ctxtag publish-features`), not `feast apply`")
_spec = importlib.util.spec_from_file_location("ctxtag_feast_definitions", _root / "ctxtag/platform/feast_definitions.py")
_definitions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_definitions)

_params = yaml.safe_load(Path(os.environ.get("CTXTAG_PARAMS") or _root / "params.yaml").read_text())
_logs = _params.get("logs", {})
# the sources are named as the pipeline's registry names them: relative to the data folder
(user, track, user_listening_history, user_device_time_profile, track_audio_features,
 user_aware_tagger, situational_model, joint_model, track_contexts, track_listening_embedding, user_listening_embedding,
 cold_start_recommender) = _definitions.definitions(Path("."), _params["contexts"], _logs["devices"], _logs["networks"])
