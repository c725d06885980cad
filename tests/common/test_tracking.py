"""The one way runs log metrics: flattened, finite, with names MLflow accepts."""

import math

from ctxtag.common.tracking import finite_metrics, flatten, metric_name


def test_nested_reports_flatten_to_dotted_names():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert flatten({"x": 1}, "pre") == {"pre.x": 1}


def test_non_finite_missing_and_non_numeric_values_are_left_out():
    got = finite_metrics({"auc": 0.7, "nan": math.nan, "inf": math.inf, "none": None, "n": 3, "flag": True,
                          "name": "cnn", "per_context": {"car": 0.5, "sad": None}})
    assert got == {"auc": 0.7, "n": 3.0, "per_context.car": 0.5}


def test_names_are_sanitised_once_for_every_caller():
    assert metric_name("accuracy@3") == "accuracy_at_3"
    assert metric_name("hit_rate@10 (new)") == "hit_rate_at_10 _new_"
    assert finite_metrics({"stream": {"accuracy@3": 0.9}}, "audio") == {"audio.stream.accuracy_at_3": 0.9}


def test_numpy_scalars_are_numbers_too():
    import numpy as np

    assert finite_metrics({"pairs": np.int64(12), "auc": np.float32(0.5), "bad": np.float64("nan")}) == \
        {"pairs": 12.0, "auc": 0.5}
