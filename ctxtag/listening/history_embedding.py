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
    pairs = pd.DataFrame({"user_id": user_ids.to_numpy(), "track_id": track_ids.to_numpy()})
    counts = pairs.groupby(["user_id", "track_id"], sort=False).size().reset_index(name="n")
    return fit_projection_from_counts(counts["user_id"], counts["track_id"], counts["n"], dim, seed)


def fit_lake_projection(engine, lake_parts, dim: int, seed: int) -> pd.DataFrame:
    """``fit_item_projection`` over the lake: the engine counts (user, track) pairs, so only the
    pairs, not the events, reach memory."""
    engine.parquet("events", lake_parts)
    counts = engine.arrow("SELECT user_id, track_id, count(*) AS n FROM events GROUP BY user_id, track_id").to_pandas()
    return fit_projection_from_counts(counts["user_id"], counts["track_id"], counts["n"], dim, seed)


def fit_projection_from_counts(user_ids: pd.Series, track_ids: pd.Series, counts: pd.Series, dim: int,
                               seed: int) -> pd.DataFrame:
    """The fit, from how often each user streamed each track."""
    from sklearn.utils.extmath import randomized_svd

    users = pd.Categorical(user_ids, categories=np.sort(pd.unique(user_ids)))
    tracks = pd.Categorical(track_ids, categories=np.sort(pd.unique(track_ids)))
    x = sparse.csr_matrix((counts.to_numpy(dtype=np.float64), (users.codes, tracks.codes)),
                          shape=(len(users.categories), len(tracks.categories)))
    x.sum_duplicates()                  # canonical form: the fit never depends on the pairs' order
    x = sparse.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)) @ x   # shares per user
    k = max(1, min(dim, min(x.shape) - 1))
    _, s, vt = randomized_svd(x, n_components=k, random_state=seed)
    proj = vt.T / np.maximum(s, 1e-12)
    if k < dim:                         # a tiny world: pad so the feature keeps its declared size
        proj = np.hstack([proj, np.zeros((proj.shape[0], dim - k))])
    return pd.DataFrame(proj.astype(np.float32), index=pd.Index(tracks.categories, name="track_id"),
                        columns=[f"h{i}" for i in range(dim)])


def event_rows(track_ids: pd.Series, projection: pd.DataFrame) -> np.ndarray:
    """Each event's row of V S^-1 (zeros for a track the SVD never saw), to be summed and divided
    by the stream count: that is the fold-in of the shares."""
    return projection.reindex(track_ids.to_numpy()).fillna(0.0).to_numpy(dtype=np.float64)
