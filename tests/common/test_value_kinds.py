import numpy as np
import pandas as pd

from ctxtag.common.value_kinds import kind, kinds


def test_kinds_per_value_and_per_typed_column_agree():
    values = ["a", None, 3, 3.0, 2.5, True, {"a": 1}, [1], b"x", float("nan")]
    assert [kind(v) for v in values] == ["text", "missing", "integer", "integer", "number", "boolean",
                                         "object", "list", "bytes", "missing"]
    assert kinds(pd.Series(values, dtype=object)).tolist() == [kind(v) for v in values]
    assert kinds(pd.Series(["a", None, "b"], dtype=object)).tolist() == ["text", "missing", "text"]
    assert kinds(pd.Series([1, 2], dtype="Int64")).tolist() == ["integer", "integer"]
    assert kinds(pd.Series([1.0, 1.5, np.nan])).tolist() == ["integer", "number", "missing"]
    assert kinds(pd.Series([True, False])).tolist() == ["boolean", "boolean"]
