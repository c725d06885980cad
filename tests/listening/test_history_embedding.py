import numpy as np
import pandas as pd
import pytest

from ctxtag.listening.engine import open_engine
from ctxtag.listening.history_embedding import fit_item_projection, fit_lake_projection


def _events(seed: int = 0, n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": rng.choice([f"u{i:02d}" for i in range(30)], n),
                         "track_id": rng.choice([f"t{i:02d}" for i in range(40)], n)})


def _lake_fit(tmp_path, events, held):
    path = tmp_path / "part.parquet"
    events.to_parquet(path, index=False)
    engine = open_engine()
    try:
        return fit_lake_projection(engine, [path], 6, 0, held)
    finally:
        engine.close()


def test_the_fit_leaves_out_held_out_users_and_tracks(tmp_path):
    ev = _events()
    held = (np.array(["u00", "u01", "u02"]), np.array(["t00", "t01"]))
    proj = _lake_fit(tmp_path, ev, held)
    kept = ev[~ev["user_id"].isin(held[0]) & ~ev["track_id"].isin(held[1])]
    np.testing.assert_allclose(proj.to_numpy(), fit_item_projection(kept["user_id"], kept["track_id"], 6, 0).to_numpy(),
                               rtol=1e-5, atol=1e-6)
    assert not set(held[1]) & set(proj.index)          # a held-out track folds in as a zero row


def test_what_a_held_out_user_streams_changes_nothing(tmp_path):
    ev = _events()
    held = (np.array(["u00"]), np.array([], dtype=object))
    other = ev.copy()
    mine = other["user_id"] == "u00"
    other.loc[mine, "track_id"] = "t39"                   # the held-out user's history, rewritten
    a, b = _lake_fit(tmp_path, ev, held), _lake_fit(tmp_path, other, held)
    pd.testing.assert_frame_equal(a, b)
    # without holding them out, the same rewrite moves the basis
    assert not np.allclose(_lake_fit(tmp_path, ev, None).to_numpy(), _lake_fit(tmp_path, other, None).to_numpy())


@pytest.mark.slow
def test_spark_leaves_out_the_same_events(tmp_path, spark_engine):
    ev = _events()
    path = tmp_path / "part.parquet"
    ev.to_parquet(path, index=False)
    held = (np.array(["u00", "u07"]), np.array(["t03"]))
    got = fit_lake_projection(spark_engine, [path], 6, 0, held)
    np.testing.assert_allclose(got.to_numpy(), _lake_fit(tmp_path, ev, held).to_numpy(), rtol=1e-5, atol=1e-6)
    assert "t03" not in got.index
