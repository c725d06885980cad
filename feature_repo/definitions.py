"""Feast definitions for the `feast` CLI; the objects come from ctxtag.platform.feast_definitions (one source).

The data folder is ``paths.feast`` of params.yaml (relative paths are relative to the project
root, as for every stage). ``feast_cli.py`` runs the CLI with the same folder in the
feature_store*.yaml files (``${CTXTAG_FEAST_DIR}``).
"""

import os
from pathlib import Path

from ctxtag.config import load_params
from ctxtag.platform.feast_definitions import definitions

_repo = Path(__file__).resolve().parent
_root = _repo.parent
_params = load_params(os.environ.get("CTXTAG_PARAMS") or _root / "params.yaml")
FEAST_DIR = (_root / _params.paths.feast).resolve()
# the sources name their parquet relative to this repository (Feast resolves them against it), so
# the CLI's registry moves with the project; an absolute paths.feast stays absolute
_data = FEAST_DIR if Path(_params.paths.feast).is_absolute() else Path(os.path.relpath(FEAST_DIR, _repo))
# feature_store*.yaml name the folder ${CTXTAG_FEAST_DIR}: it must be set, and be this folder
if Path(os.environ.get("CTXTAG_FEAST_DIR") or "/unset").resolve() != FEAST_DIR:
    raise RuntimeError(f"CTXTAG_FEAST_DIR={os.environ.get('CTXTAG_FEAST_DIR')!r} is not params.yaml "
                       f"paths.feast ({FEAST_DIR}): run the CLI as `python feature_repo/feast_cli.py ...`")
(user, track, user_listening_history, user_device_time_profile, track_audio_features,
 user_aware_tagger, situational_model, joint_model, track_listening_embedding, user_listening_embedding,
 cold_start_recommender) = definitions(
    _data, _params.contexts, _params.logs.devices, _params.logs.networks)
