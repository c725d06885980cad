"""Confidence weights for the sample-level weighted cross-entropy (ICASSP 2020 §4.2-4.3, Eq. 3-4).

Negative weights  w̄_ic = P(y_c = 0 | y_i), estimated from label co-occurrences in the label
matrix. Conditioning on the full vector y_i would be trivial (y_ic itself is in it), so, as the
paper's intent requires, c is conditioned on the *other* labels of track i:

- exact match:   P(y_c = 0 | y_k = y_ik for every k != c)          (zeros included)
- ignore zeros:  P(y_c = 0 | y_k = 1 for every k != c with y_ik = 1) (zeros of y_i ignored)
- pairwise:      mean over k != c of P(y_c = 0 | y_k = y_ik)

Positive weights  w_ic = n_ic / N_c * log(m / n̄_i)  (TF-IDF), with N_c = sum_i n_ic the number of
(track, playlist) appearances in context c and n̄_i the number of labels of track i. The paper
normalises them "with unit-mean unit-variance" and then says "we normalize it to have a mean of 1".
``scaling="mean"`` (the default) divides by the mean over positive entries: the weights keep their
sign and ratios, but a track with every label has log(m / m) = 0, so on the real Deezer matrix
11.1 % of the positives weigh 0 and the largest 129.7. ``scaling="mean_std"`` is the literal
unit-mean unit-variance, (w - mean) / std + 1: on the real matrix every positive keeps a weight
above 0 (its heavy tail makes std > mean) and the largest is 46.7, but where std < mean the
below-average positives go under 0 (6.3 % of them on the demo world), which reverses the gradient
of their positive term — a silent failure, where a zero weight only ignores a label. Hence
``mean`` is the default and ``mean_std`` the option (weights.positive_scaling); the weights report
gives the share of zero and negative positives either way.

Fitting: every estimate (the co-occurrence counts, N_c, the scaling's mean and spread) comes from
the rows ``fit`` selects, the training split by default (weights.fit_on), and is then evaluated at
every track's label vector: validation and test labels never shape the loss. A conditioning
vector the fitted rows never show falls back to the context's marginal P(y_c = 0) among them.

Everything is vectorised: label vectors are packed into integer codes and counted once;
"exact match" reads the counts of the code with bit c cleared and set, "ignore zeros" reads
superset sums of those counts (a zeta transform over the 2^m lattice, O(m 2^m)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctxtag.vocabulary import POSITIVE_SCALINGS

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


def _fitted(labels: np.ndarray, fit: np.ndarray | None) -> np.ndarray:
    """The rows the estimates come from (all of them when ``fit`` is None)."""
    return labels if fit is None else labels[np.asarray(fit, dtype=bool)]


def _or_marginal(num: np.ndarray, den: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """num / den, and the fitted rows' P(y_c = 0) where they never show the condition (den 0)."""
    marginal = 1.0 - ref.mean(axis=0) if len(ref) else np.full(num.shape[1], 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), marginal[None, :]).astype(np.float32)


def negative_exact(labels: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """P(y_c = 0 | all other labels of the track equal), per (track, context)."""
    codes, bits = _codes(labels)
    ref = _fitted(labels, fit)
    ref_codes = _codes(ref)[0]
    key0 = codes[:, None] & ~bits[None, :]      # the track's vector with y_c = 0
    key1 = key0 | bits[None, :]                 # ... and with y_c = 1
    if labels.shape[1] <= DENSE_MAX_LABELS:
        count = np.bincount(ref_codes, minlength=1 << labels.shape[1])
        n0, n1 = count[key0], count[key1]
    else:
        uniq, freq = np.unique(ref_codes, return_counts=True)
        n0, n1 = _lookup(uniq, freq, key0), _lookup(uniq, freq, key1)
    return _or_marginal(n0, n0 + n1, ref)


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


def negative_ignore_zeros(labels: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """P(y_c = 0 | the track's other positive labels are all positive)."""
    codes, bits = _codes(labels)
    ref = _fitted(labels, fit)
    ref_codes = _codes(ref)[0]
    m = labels.shape[1]
    key0 = codes[:, None] & ~bits[None, :]
    key1 = key0 | bits[None, :]
    if m <= DENSE_MAX_LABELS:
        sup = superset_counts(np.bincount(ref_codes, minlength=1 << m), m)
        total, with_c = sup[key0], sup[key1]
    else:
        uniq, freq = np.unique(ref_codes, return_counts=True)
        total, with_c = _sparse_superset(uniq, freq, key0), _sparse_superset(uniq, freq, key1)
    return _or_marginal(total - with_c, total, ref)


def _sparse_superset(uniq: np.ndarray, freq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Superset sums for many labels: over the distinct codes only (u_keys x u_codes)."""
    ukeys, inverse = np.unique(keys, return_inverse=True)
    sums = np.array([(freq * ((uniq & k) == k)).sum() for k in ukeys], dtype=np.int64)
    return sums[inverse].reshape(keys.shape)


def negative_pairwise(labels: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """mean over k != c of P(y_c = 0 | y_k = y_ik), from the co-occurrence matrix."""
    y = labels.astype(np.float64)
    ref = _fitted(y, fit)
    n, m = ref.shape
    co = ref.T @ ref                              # co[k, c] = #(y_k = 1, y_c = 1)
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


def positive_tfidf(labels: np.ndarray, counts: np.ndarray, fit: np.ndarray | None = None,
                   scaling: str = "mean") -> np.ndarray:
    """Eq. 4, scaled over the fitted rows' positive entries (module docstring); 0 where the label
    is negative."""
    if scaling not in POSITIVE_SCALINGS:
        raise ValueError(f"positive weight scaling must be one of {POSITIVE_SCALINGS}, not {scaling!r}")
    y = labels.astype(bool)
    keep = np.ones(len(y), bool) if fit is None else np.asarray(fit, dtype=bool)
    n_c = counts[keep].sum(axis=0, dtype=np.float64)        # N_c
    n_bar = y.sum(axis=1, dtype=np.float64)                 # n̄_i
    m = labels.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        tf = counts / np.where(n_c > 0, n_c, 1.0)[None, :]
        idf = np.log(m / np.where(n_bar > 0, n_bar, 1.0))[:, None]
    w = np.where(y, tf * idf, 0.0)
    fitted = w[y & keep[:, None]]
    mean = fitted.mean() if fitted.size else 0.0
    if scaling == "mean_std":
        std = fitted.std() if fitted.size else 0.0
        w = np.where(y, (w - mean) / (std if std > 0 else 1.0) + 1.0, 0.0)
    elif mean > 0:
        w = w / mean
    return w.astype(np.float32)


def compute_weights(labels: np.ndarray, counts: np.ndarray, pairwise: bool = True,
                    fit: np.ndarray | None = None, positive_scaling: str = "mean") -> Weights:
    """Every weight of every track, estimated on the rows ``fit`` selects (all when None)."""
    return Weights(
        neg_exact=negative_exact(labels, fit),
        neg_ignore_zeros=negative_ignore_zeros(labels, fit),
        neg_pairwise=negative_pairwise(labels, fit) if pairwise else None,
        pos_tfidf=positive_tfidf(labels, counts, fit, positive_scaling),
    )


def summary(w: Weights, labels: np.ndarray, contexts: tuple[str, ...]) -> dict:
    """Mean negative weight per scheme and context, and the positive weights' spread."""
    neg = labels == 0
    pos = w.pos_tfidf[labels == 1]
    return {
        "tracks": len(labels),
        "mean_negative_weight": {
            name: {c: float(arr[neg[:, j], j].mean()) if neg[:, j].any() else None
                   for j, c in enumerate(contexts)}
            for name, arr in w.as_dict().items() if name.startswith("neg_")
        },
        "positive_weight": {"mean": float(pos.mean()), "std": float(pos.std()), "max": float(pos.max()),
                            "share_zero": float((pos == 0).mean()), "share_negative": float((pos < 0).mean())},
    }
