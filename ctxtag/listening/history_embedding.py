"""The user history embedding that feeds the user branch (ISMIR 2020: "user information extracted
from the listening history").

The paper takes its user embeddings from the listening history without giving the method here;
we use the classic collaborative-filtering one: a truncated SVD of the user x track matrix of
listening shares, X ~ U S V^T, fitted once on the lake. The fit sees no user or track that a cold
split holds out (ctxtag.context.splits.held_out, ISSUE: no transductive fit): a held-out user's
history and a held-out track's plays are not in X, so the user models are scored on embeddings
the basis learnt nothing about; such a user folds in like any new one, and a held-out track has
a zero row (the fit never saw it). A user's embedding at any moment is the
fold-in u = x V S^-1 of the shares x up to that moment. Fold-in is linear in x, so daily
point-in-time snapshots are cumulative sums of one row of V S^-1 per event (no refit, no per-user
loop), and a user the SVD never saw (cold user) still gets an embedding from their history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse


def fit_item_projection(user_ids: pd.Series, track_ids: pd.Series, dim: int, seed: int) -> pd.DataFrame:
    """V S^-1 as a (track x dim) frame indexed by track_id, from one row per listening event."""
    users = pd.Categorical(user_ids.to_numpy(), categories=np.sort(pd.unique(user_ids.to_numpy())))
    tracks = pd.Categorical(track_ids.to_numpy(), categories=np.sort(pd.unique(track_ids.to_numpy())))
    x = sparse.csr_matrix((np.ones(len(users.codes)), (users.codes, tracks.codes)),
                          shape=(len(users.categories), len(tracks.categories)))
    x.sum_duplicates()                  # canonical form: the fit never depends on the events' order
    return _fit(_shares(x), np.asarray(tracks.categories), dim, seed)


def fit_lake_projection(engine, lake_parts, dim: int, seed: int,
                        held_out: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """``fit_item_projection`` over the lake, without the events of ``held_out`` (users, tracks).
    The engine counts (user, track) pairs and numbers users and tracks in id order; the counts come
    back as int32 codes sorted by user, each user's tracks last first: the layout of ``_shares``,
    so the matrix is built once and divided in place. ~12 bytes a pair reach memory (at 100M
    events the pairs as Python strings would not fit, and scipy's own conversion would copy them
    twice)."""
    engine.parquet("events", lake_parts)
    held_users, held_tracks = held_out if held_out is not None else ([], [])
    engine.table("held_users", pa.table({"user_id": pa.array([str(u) for u in held_users], pa.string())}))
    engine.table("held_tracks", pa.table({"track_id": pa.array([str(t) for t in held_tracks], pa.string())}))
    # a subquery, not a table: at 100M events a copy of the fit's events would double the work
    fit = ("(SELECT e.user_id, e.track_id FROM events e "
           "WHERE NOT EXISTS (SELECT 1 FROM held_users h WHERE h.user_id = e.user_id) "
           "AND NOT EXISTS (SELECT 1 FROM held_tracks h WHERE h.track_id = e.track_id))")
    engine.materialize("track_codes", "SELECT track_id, CAST(row_number() OVER (ORDER BY track_id) - 1 AS INT) AS ti "
                                      f"FROM (SELECT DISTINCT track_id FROM {fit} f) t")
    coded = engine.arrow(f"""
        SELECT u.ui, t.ti, CAST(count(*) AS INT) AS n FROM {fit} e
        JOIN (SELECT user_id, CAST(row_number() OVER (ORDER BY user_id) - 1 AS INT) AS ui
              FROM (SELECT DISTINCT user_id FROM {fit} f) d) u ON e.user_id = u.user_id
        JOIN track_codes t ON e.track_id = t.track_id
        GROUP BY u.ui, t.ti
        ORDER BY u.ui, t.ti DESC""")
    tracks = engine.arrow("SELECT track_id FROM track_codes ORDER BY ti").column("track_id").to_numpy(zero_copy_only=False)
    indptr = np.r_[0, np.cumsum(np.bincount(_numpy(coded.column("ui"), np.int32)))].astype(np.int64)
    # copies, so that the engine's result goes now: its columns are freed together
    x = sparse.csr_matrix((_numpy(coded.column("n"), np.float64), _numpy(coded.column("ti"), np.int32), indptr),
                          shape=(len(indptr) - 1, len(tracks)))
    del coded
    x.data *= np.repeat(_scale(x), np.diff(x.indptr))     # _shares, in place: the same products
    return _fit(x, tracks, dim, seed)


def _numpy(col: pa.ChunkedArray, dtype) -> np.ndarray:
    """``col`` as one new array of ``dtype``, filled chunk by chunk (no whole-column temporary)."""
    out = np.empty(len(col), dtype=dtype)
    at = 0
    for chunk in col.chunks:
        out[at:at + len(chunk)] = chunk.to_numpy()
        at += len(chunk)
    return out


def _scale(x: sparse.csr_matrix) -> np.ndarray:
    """1 / each row's sum (of at least 1)."""
    return 1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)


def _shares(x: sparse.csr_matrix) -> sparse.csr_matrix:
    """The listening shares: each row of counts over its sum, as scipy's product with the diagonal
    leaves them, each row's columns last first (the SVD's sums, and so its bits, follow that
    order; ``fit_lake_projection`` builds that layout directly)."""
    return sparse.diags(_scale(x)) @ x


def _fit(x: sparse.csr_matrix, track_ids: np.ndarray, dim: int, seed: int) -> pd.DataFrame:
    """The fit, from the (user x track) listening shares (``_shares``' layout); ``track_ids``: the
    columns' ids, sorted."""
    from sklearn.utils.extmath import randomized_svd

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
