from pathlib import Path

import pytest
import yaml

from ctxtag.config import ConfigError, Params, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_equals_embedded_defaults():
    # the embedded defaults are what runs without a params file: keep them identical
    assert load_params(ROOT / "params.yaml") == Params()


def test_missing_file_gives_defaults(tmp_path):
    assert load_params(tmp_path / "absent.yaml") == Params()


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in labels: \['min_playlist'\]"):
        params_from_dict({"labels": {"min_playlist": 2}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="labels.min_playlists: expected int"):
        params_from_dict({"labels": {"min_playlists": "three"}})
    with pytest.raises(ConfigError, match="labels.balance: expected true/false"):
        params_from_dict({"labels": {"balance": "yes"}})


def test_split_ratios_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1"):
        params_from_dict({"split": {"train": 0.7, "validation": 0.1, "test": 0.25}})


def test_nested_values_are_typed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"synth": {"playlist_len": [5, 9]}, "paths": {"tracks": None}}))
    p = load_params(path)
    assert p.synth.playlist_len == (5, 9)
    assert p.paths.tracks is None
    assert isinstance(p.paths.raw, Path)


def test_serving_needs_a_trained_split_type():
    with pytest.raises(ConfigError, match="serving.split 'warm' is not trained"):
        params_from_dict({"user_models": {"splits": ["cold_user"]}})
    assert params_from_dict({"user_models": {"splits": ["cold_user"]}, "serving": {"split": "cold_user"}})
