"""Train/validation/test split: iterative multi-label stratification (Sechidis et al. 2011)
over groups, so that no artist and no album appears in two splits (ICASSP 2020 §4.1).

Tracks linked by a shared artist or album form one group (connected components of the
track-artist-album graph). The groups are then distributed by the iterative algorithm: take the
label with the fewest remaining positives, hand each group that carries it to the split that
still wants most of that label (ties: most wanted tracks overall, then at random), and update
what each split still wants. Groups without labels fill the splits by size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ctxtag.vocabulary import SPLITS


def group_ids(artist_ids: Sequence, album_ids: Sequence | None = None) -> np.ndarray:
    """Connected components of tracks sharing an artist or an album; missing ids link nothing."""
    n = len(artist_ids)
    cols = []
    for ids in (artist_ids, album_ids):
        if ids is None:
            continue
        s = pd.Series(ids, dtype="object")
        codes, _ = pd.factorize(s)                  # missing -> -1
        cols.append(codes)
    offset, rows, nodes = n, [], []
    for codes in cols:
        ok = codes >= 0
        rows.append(np.nonzero(ok)[0])
        nodes.append(codes[ok] + offset)
        offset += codes.max() + 1 if len(codes) and codes.max() >= 0 else 0
    r = np.concatenate(rows) if rows else np.array([], dtype=int)
    c = np.concatenate(nodes) if nodes else np.array([], dtype=int)
    graph = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(offset, offset))
    _, comp = connected_components(graph, directed=False)
    return comp[:n]


def iterative_stratification(labels: np.ndarray, groups: np.ndarray, ratios: Sequence[float],
                             seed: int) -> np.ndarray:
    """Split index (0..k-1) for every track; every group lands in exactly one split."""
    rng = np.random.default_rng(seed)
    ratios = np.asarray(ratios, dtype=np.float64)
    g_codes, _ = pd.factorize(pd.Series(groups))
    n_groups = g_codes.max() + 1
    y = labels.astype(np.int64)
    g_labels = np.zeros((n_groups, y.shape[1]), dtype=np.int64)
    np.add.at(g_labels, g_codes, y)
    g_size = np.bincount(g_codes, minlength=n_groups).astype(np.float64)

    target = np.maximum(ratios[:, None] * g_labels.sum(axis=0)[None, :], 1e-9)   # (k, m)
    want = target.copy()                                     # positives each split still wants
    want_size = ratios * len(y)
    assigned = np.full(n_groups, -1, dtype=np.int64)
    remaining = g_labels.sum(axis=0).astype(np.float64)
    tiebreak = rng.random(n_groups)

    while True:
        open_labels = np.nonzero(remaining > 0)[0]
        if len(open_labels) == 0:
            break
        label = open_labels[np.argmin(remaining[open_labels])]
        todo = np.nonzero((assigned < 0) & (g_labels[:, label] > 0))[0]
        todo = todo[np.argsort(tiebreak[todo])]
        for g in todo:
            # Sechidis picks the split that wants this label most; a group carries many labels
            # at once, so we weigh the split's relative need for every label of the group
            # (the rarest label counts most, through its small target), then overall room.
            need = (want / target) @ g_labels[g]
            room = want_size > 0
            s = np.lexsort((rng.random(len(ratios)), want_size, need, want[:, label] > 0, room))[-1]
            assigned[g] = s
            want[s] -= g_labels[g]
            want_size[s] -= g_size[g]
            remaining -= g_labels[g]
    for g in np.nonzero(assigned < 0)[0][np.argsort(tiebreak[assigned < 0])]:
        s = int(np.argmax(want_size))
        assigned[g] = s
        want_size[s] -= g_size[g]
    return assigned[g_codes]


def split_report(labels: np.ndarray, split: np.ndarray, contexts: Sequence[str],
                 artist_ids: Sequence, album_ids: Sequence | None) -> dict:
    """Per-split sizes and per-context positive ratios, and the artist/album overlap (must be 0)."""
    report: dict = {"splits": {}, "overlap": {}}
    for k, name in enumerate(SPLITS):
        mask = split == k
        report["splits"][name] = {
            "tracks": int(mask.sum()),
            "share": float(mask.mean()) if len(mask) else 0.0,
            "positive_ratio": {c: float(labels[mask, j].mean()) if mask.any() else 0.0
                               for j, c in enumerate(contexts)},
            "positives": {c: int(labels[mask, j].sum()) for j, c in enumerate(contexts)},
        }
    for kind, ids in (("artists", artist_ids), ("albums", album_ids)):
        if ids is None:
            continue
        frame = pd.DataFrame({"id": ids, "split": split}).dropna()
        report["overlap"][kind] = int((frame.groupby("id")["split"].nunique() > 1).sum())
    return report
