"""The user history embedding that feeds the user branch (ISMIR 2020: "user information extracted
from the listening history").

The paper takes its user embeddings from the listening history without giving the method here;
we use the classic collaborative-filtering one: a truncated SVD of the user x track matrix of
listening shares, X ~ U S V^T, fitted once on the lake. A user's embedding at any moment is the
fold-in u = x V S^-1 of the shares x up to that moment. Fold-in is linear in x, so daily
point-in-time snapshots are cumulative sums of one row of V S^-1 per event (no refit, no per-user
loop), and a user the SVD never saw (cold user) still gets an embedding from their history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def fit_item_projection(user_ids: pd.Series, track_ids: pd.Series, dim: int, seed: int) -> pd.DataFrame:
    """V S^-1 as a (track x dim) frame indexed by track_id, from one row per listening event."""
    users = pd.Categorical(user_ids.to_numpy(), categories=np.sort(pd.unique(user_ids.to_numpy())))
    tracks = pd.Categorical(track_ids.to_numpy(), categories=np.sort(pd.unique(track_ids.to_numpy())))
    return _fit(users.codes, tracks.codes, np.ones(len(users.codes)), len(users.categories),
                np.asarray(tracks.categories), dim, seed)


def fit_lake_projection(engine, lake_parts, dim: int, seed: int) -> pd.DataFrame:
    """``fit_item_projection`` over the lake: the engine counts (user, track) pairs and numbers
    users and tracks in id order, so only integer codes (and the track ids) reach memory — at 100M
    events the pairs as Python strings would not fit."""
    engine.parquet("events", lake_parts)
    engine.materialize("pair_counts", "SELECT user_id, track_id, count(*) AS n FROM events GROUP BY user_id, track_id")
    engine.materialize("track_codes", "SELECT track_id, row_number() OVER (ORDER BY track_id) - 1 AS ti "
                                      "FROM (SELECT DISTINCT track_id FROM pair_counts) t")
    coded = engine.arrow("""
        SELECT u.ui, t.ti, c.n FROM pair_counts c
        JOIN (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS ui
              FROM (SELECT DISTINCT user_id FROM pair_counts) d) u ON c.user_id = u.user_id
        JOIN track_codes t ON c.track_id = t.track_id""")
    tracks = engine.arrow("SELECT track_id FROM track_codes ORDER BY ti").column("track_id").to_numpy(zero_copy_only=False)
    ui, ti = (coded.column(c).to_numpy().astype(np.int64) for c in ("ui", "ti"))
    return _fit(ui, ti, coded.column("n").to_numpy().astype(np.float64), int(ui.max(initial=-1)) + 1, tracks, dim, seed)


def _fit(user_codes: np.ndarray, track_codes: np.ndarray, counts: np.ndarray, n_users: int, track_ids: np.ndarray,
         dim: int, seed: int) -> pd.DataFrame:
    """The fit, from how often each user (codes in id order) streamed each track (codes into
    ``track_ids``, sorted)."""
    from sklearn.utils.extmath import randomized_svd

    x = sparse.csr_matrix((np.asarray(counts, dtype=np.float64), (user_codes, track_codes)),
                          shape=(n_users, len(track_ids)))
    x.sum_duplicates()                  # canonical form: the fit never depends on the pairs' order
    x = sparse.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)) @ x   # shares per user
    k = max(1, min(dim, min(x.shape) - 1))
    _, s, vt = randomized_svd(x, n_components=k, random_state=seed)
    proj = vt.T / np.maximum(s, 1e-12)
    if k < dim:                         # a tiny world: pad so the feature keeps its declared size
        proj = np.hstack([proj, np.zeros((proj.shape[0], dim - k))])
    return pd.DataFrame(proj.astype(np.float32), index=pd.Index(track_ids, name="track_id"),
                        columns=[f"h{i}" for i in range(dim)])


def event_rows(track_ids: pd.Series, projection: pd.DataFrame) -> np.ndarray:
    """Each event's row of V S^-1 (zeros for a track the SVD never saw), to be summed and divided
    by the stream count: that is the fold-in of the shares."""
    return projection.reindex(track_ids.to_numpy()).fillna(0.0).to_numpy(dtype=np.float64)
