"""Confidence weights for the sample-level weighted cross-entropy (ICASSP 2020 §4.2-4.3, Eq. 3-4).

Negative weights  w̄_ic = P(y_c = 0 | y_i), estimated from label co-occurrences in the label
matrix. Conditioning on the full vector y_i would be trivial (y_ic itself is in it), so, as the
paper's intent requires, c is conditioned on the *other* labels of track i:

- exact match:   P(y_c = 0 | y_k = y_ik for every k != c)          (zeros included)
- ignore zeros:  P(y_c = 0 | y_k = 1 for every k != c with y_ik = 1) (zeros of y_i ignored)
- pairwise:      mean over k != c of P(y_c = 0 | y_k = y_ik)

Positive weights  w_ic = n_ic / N_c * log(m / n̄_i)  (TF-IDF), with N_c = sum_i n_ic the number of
(track, playlist) appearances in context c and n̄_i the number of labels of track i. The paper
normalises them to unit mean ("since there are no missing labels in the positive samples, we
normalize it to have a mean of 1"); we divide by the mean over positive entries. (Standardising
to unit variance as well would make weights of below-average tracks negative, reversing the
gradient of the positive term, so only the scale is changed.)

Everything is vectorised: label vectors are packed into integer codes and counted once;
"exact match" reads the counts of the code with bit c cleared and set, "ignore zeros" reads
superset sums of those counts (a zeta transform over the 2^m lattice, O(m 2^m)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DENSE_MAX_LABELS = 22  # 2^22 counters = 32 MiB; above this a sort-based path is used


@dataclass
class Weights:
    neg_exact: np.ndarray
    neg_ignore_zeros: np.ndarray
    neg_pairwise: np.ndarray | None
    pos_tfidf: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        out = {"neg_exact": self.neg_exact, "neg_ignore_zeros": self.neg_ignore_zeros,
               "pos_tfidf": self.pos_tfidf}
        if self.neg_pairwise is not None:
            out["neg_pairwise"] = self.neg_pairwise
        return out


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = labels.shape[1]
    if m > 62:
        raise ValueError(f"at most 62 labels are supported, got {m}")
    bits = np.left_shift(np.int64(1), np.arange(m, dtype=np.int64))
    return labels.astype(np.int64) @ bits, bits


def negative_exact(labels: np.ndarray) -> np.ndarray:
    """P(y_c = 0 | all other labels of the track equal), per (track, context)."""
    codes, bits = _codes(labels)
    key0 = codes[:, None] & ~bits[None, :]      # the track's vector with y_c = 0
    key1 = key0 | bits[None, :]                 # ... and with y_c = 1
    if labels.shape[1] <= DENSE_MAX_LABELS:
        count = np.bincount(codes, minlength=1 << labels.shape[1])
        n0, n1 = count[key0], count[key1]
    else:
        uniq, freq = np.unique(codes, return_counts=True)
        n0, n1 = _lookup(uniq, freq, key0), _lookup(uniq, freq, key1)
    return (n0 / (n0 + n1)).astype(np.float32)


def _lookup(uniq: np.ndarray, freq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
    return np.where(uniq[pos] == keys, freq[pos], 0)


def superset_counts(count: np.ndarray, m: int) -> np.ndarray:
    """F[S] = sum of count[T] over all label sets T that contain S (zeta transform)."""
    f = count.astype(np.int64).copy()
    for b in range(m):
        view = f.reshape(-1, 2, 1 << b)
        view[:, 0, :] += view[:, 1, :]
    return f


def negative_ignore_zeros(labels: np.ndarray) -> np.ndarray:
    """P(y_c = 0 | the track's other positive labels are all positive)."""
    codes, bits = _codes(labels)
    m = labels.shape[1]
    key0 = codes[:, None] & ~bits[None, :]
    key1 = key0 | bits[None, :]
    if m <= DENSE_MAX_LABELS:
        sup = superset_counts(np.bincount(codes, minlength=1 << m), m)
        total, with_c = sup[key0], sup[key1]
    else:
        uniq, freq = np.unique(codes, return_counts=True)
        total, with_c = _sparse_superset(uniq, freq, key0), _sparse_superset(uniq, freq, key1)
    return ((total - with_c) / total).astype(np.float32)


def _sparse_superset(uniq: np.ndarray, freq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Superset sums for many labels: over the distinct codes only (u_keys x u_codes)."""
    ukeys, inverse = np.unique(keys, return_inverse=True)
    sums = np.array([(freq * ((uniq & k) == k)).sum() for k in ukeys], dtype=np.int64)
    return sums[inverse].reshape(keys.shape)


def negative_pairwise(labels: np.ndarray) -> np.ndarray:
    """mean over k != c of P(y_c = 0 | y_k = y_ik), from the co-occurrence matrix."""
    y = labels.astype(np.float64)
    n, m = y.shape
    co = y.T @ y                                  # co[k, c] = #(y_k = 1, y_c = 1)
    pos = np.diag(co)                             # #(y_k = 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # p1[k, c] = P(y_c = 0 | y_k = 1), p0[k, c] = P(y_c = 0 | y_k = 0)
        p1 = (pos[:, None] - co) / pos[:, None]
        p0 = ((n - pos)[:, None] - (pos[None, :] - co)) / (n - pos)[:, None]
    marginal = 1.0 - pos / n
    p1 = np.where(np.isfinite(p1), p1, marginal[None, :])   # y_k never (or always) positive
    p0 = np.where(np.isfinite(p0), p0, marginal[None, :])
    np.fill_diagonal(p1, 0.0)
    np.fill_diagonal(p0, 0.0)
    return ((y @ p1 + (1.0 - y) @ p0) / (m - 1)).astype(np.float32)


def positive_tfidf(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Eq. 4, scaled to mean 1 over the positive entries; 0 where the label is negative."""
    y = labels.astype(bool)
    n_c = counts.sum(axis=0, dtype=np.float64)              # N_c
    n_bar = y.sum(axis=1, dtype=np.float64)                 # n̄_i
    m = labels.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        tf = counts / np.where(n_c > 0, n_c, 1.0)[None, :]
        idf = np.log(m / np.where(n_bar > 0, n_bar, 1.0))[:, None]
    w = np.where(y, tf * idf, 0.0)
    mean = w[y].mean() if y.any() else 0.0
    return (w / mean if mean > 0 else w).astype(np.float32)


def compute_weights(labels: np.ndarray, counts: np.ndarray, pairwise: bool = True) -> Weights:
    return Weights(
        neg_exact=negative_exact(labels),
        neg_ignore_zeros=negative_ignore_zeros(labels),
        neg_pairwise=negative_pairwise(labels) if pairwise else None,
        pos_tfidf=positive_tfidf(labels, counts),
    )


def summary(w: Weights, labels: np.ndarray, contexts: tuple[str, ...]) -> dict:
    """Mean negative weight per scheme and context, and the positive weights' spread."""
    neg = labels == 0
    return {
        "tracks": len(labels),
        "mean_negative_weight": {
            name: {c: float(arr[neg[:, j], j].mean()) if neg[:, j].any() else None
                   for j, c in enumerate(contexts)}
            for name, arr in w.as_dict().items() if name.startswith("neg_")
        },
        "positive_weight": {"mean": float(w.pos_tfidf[labels == 1].mean()), "max": float(w.pos_tfidf.max())},
    }
