"""Training data: memory-mapped mels with labels and per-sample loss weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ctxtag.audio import mel_set
from ctxtag.common.io import read_matrix, read_split
from ctxtag.common.paths import Paths
from ctxtag.tagger.losses import weight_arrays
from ctxtag.vocabulary import SPLITS


class MelDataset(Dataset):
    def __init__(self, mels: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                 pos_w: np.ndarray | None, neg_w: np.ndarray | None) -> None:
        self.mels, self.rows, self.labels = mels, rows, labels.astype(np.float32)
        n, m = labels.shape
        self.pos_w = np.ones((n, m), np.float32) if pos_w is None else pos_w.astype(np.float32)
        self.neg_w = np.ones((n, m), np.float32) if neg_w is None else neg_w.astype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([i]))

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """A whole batch in one fancy-indexed read of the memmap (the DataLoader calls this).

        Mels stay in their stored dtype (float16): half the bytes to copy to the device, where
        the training loop converts them."""
        idx = np.asarray(idx)
        order = np.argsort(self.rows[idx], kind="stable")          # sequential reads from disk
        mel = np.empty((len(idx), *self.mels.shape[1:]), dtype=self.mels.dtype)
        mel[order] = self.mels[self.rows[idx][order]]
        return (torch.from_numpy(mel), torch.from_numpy(self.labels[idx]),
                torch.from_numpy(self.pos_w[idx]), torch.from_numpy(self.neg_w[idx]))


def collate_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``MelDataset.__getitems__`` already returns stacked tensors."""
    return batch


@dataclass
class SplitData:
    """Everything a stage needs for the three splits, aligned by track."""

    track_ids: dict[str, np.ndarray]
    datasets: dict[str, MelDataset]
    labels: dict[str, np.ndarray]


def load_splits(paths: Paths, contexts: tuple[str, ...], loss: str) -> SplitData:
    """Join features, labels, weights and the split on track_id; tracks without audio drop out."""
    mels = mel_set.read(paths.features)
    row_of = mels.row_of
    ids, y = read_matrix(paths.labels_csv, contexts)
    w = np.load(paths.weights_npz, allow_pickle=False)
    if list(w["contexts"]) != list(contexts) or not np.array_equal(w["track_id"], ids.astype(str)):
        raise ValueError(f"{paths.weights_npz} does not match {paths.labels_csv}; rerun `ctxtag weights`")
    pos_all, neg_all = weight_arrays(loss, {k: w[k] for k in w.files})
    split = read_split(paths.split_csv)
    out_ids, out_ds, out_y = {}, {}, {}
    for name in SPLITS:
        sel = np.nonzero(split.reindex(ids).eq(name).to_numpy() & pd.Index(ids).isin(row_of.index))[0]
        rows = row_of.loc[ids[sel]].to_numpy()
        out_ids[name], out_y[name] = ids[sel], y[sel]
        out_ds[name] = MelDataset(mels.mels, rows, y[sel],
                                  None if pos_all is None else pos_all[sel],
                                  None if neg_all is None else neg_all[sel])
    return SplitData(out_ids, out_ds, out_y)
