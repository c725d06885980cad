"""Track x context labels from playlist titles (ICASSP 2020 §3.1).

n_ic = number of kept playlists whose title matches context c and that contain track i;
track i gets label c when n_ic >= min_playlists. The paper's worked example (5 "dance",
3 "party", 1 "chill" playlists -> dance and party, not chill) and the released count file
(labels == counts >= 3) both say ">= 3", although the prose says "more than 3".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ctxtag.labelling.matcher import match_many

__all__ = ["context_matrix", "playlist_counts", "labels_from_counts", "LabelledSet",
           "cooccurrence", "agreement_with_truth"]


@dataclass
class LabelledSet:
    """Everything downstream stages need, aligned on ``track_ids``."""

    track_ids: np.ndarray          # (n,) str
    contexts: tuple[str, ...]
    counts: np.ndarray             # (n, m) int32: n_ic
    labels: np.ndarray             # (n, m) uint8
    tracks: pd.DataFrame           # track_id, artist_id, album_id

    def frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, columns=list(self.contexts)).assign(
            track_id=self.track_ids)[["track_id", *self.contexts]]

    def subset(self, mask: np.ndarray) -> LabelledSet:
        keep = set(self.track_ids[mask])
        return LabelledSet(self.track_ids[mask], self.contexts, self.counts[mask], self.labels[mask],
                           self.tracks[self.tracks["track_id"].isin(keep)].reset_index(drop=True))


def context_matrix(titles: Sequence[str], contexts: Sequence[str]) -> np.ndarray:
    """(n_playlists, m) uint8: which contexts each title names."""
    found = match_many(titles, contexts)
    index = {c: j for j, c in enumerate(contexts)}
    rows = np.fromiter((i for i, s in enumerate(found) for _ in s), dtype=np.int64)
    cols = np.fromiter((index[c] for s in found for c in s), dtype=np.int64)
    out = np.zeros((len(found), len(contexts)), dtype=np.uint8)
    out[rows, cols] = 1
    return out


def playlist_counts(entries: pd.DataFrame, playlist_ids: pd.Index, playlist_ctx: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """n_ic for every track in ``entries`` via one sparse product (tracks x playlists) @ (playlists x m)."""
    pl_codes = pd.Index(playlist_ids).get_indexer(entries["playlist_id"])
    keep = pl_codes >= 0
    pairs = pd.DataFrame({"p": pl_codes[keep], "t": entries["track_id"].to_numpy()[keep]}).drop_duplicates()
    t_codes, track_ids = pd.factorize(pairs["t"], sort=True)
    incidence = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.int32), (t_codes, pairs["p"].to_numpy())),
        shape=(len(track_ids), len(playlist_ids)),
    )
    counts = np.asarray(incidence @ sp.csr_matrix(playlist_ctx.astype(np.int32)).toarray(), dtype=np.int32)
    return np.asarray(track_ids, dtype=object), counts


def labels_from_counts(counts: np.ndarray, min_playlists: int) -> np.ndarray:
    return (counts >= min_playlists).astype(np.uint8)


def track_metadata(entries: pd.DataFrame, track_ids: np.ndarray) -> pd.DataFrame:
    """artist and album of each track: the most frequent pair seen in the playlists."""
    pairs = entries.groupby(["track_id", "artist_id", "album_id"]).size().rename("n").reset_index()
    best = pairs.sort_values(["track_id", "n"], ascending=[True, False]).drop_duplicates("track_id")
    return best.set_index("track_id").loc[track_ids, ["artist_id", "album_id"]].reset_index()


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """ICASSP 2020 Fig. 1: how many tracks carry each pair of contexts."""
    y = labels.astype(np.int64)
    return y.T @ y


def agreement_with_truth(final: LabelledSet, truth_ids: np.ndarray, truth: np.ndarray) -> dict:
    """On the generated world: which share of the true (track, context) pairs the labels recover."""
    rows = pd.Index(truth_ids).get_indexer(final.track_ids)
    t = truth[rows].astype(bool)
    y = final.labels.astype(bool)
    return {
        "label_precision": float((y & t).sum() / max(y.sum(), 1)),
        "label_recall": float((y & t).sum() / max(t.sum(), 1)),
        "missing_positive_share": float((t & ~y).sum() / max(t.sum(), 1)),
        "true_labels_per_track": float(t.sum(axis=1).mean()),
    }
