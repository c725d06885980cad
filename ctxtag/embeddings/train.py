"""Training of Chen et al.'s two branches (ctxtag.embeddings.model).

User branch: Adam on the cross-entropy of "the liked track among sampled negatives" (YoutubeDNN's
sampled softmax), early stopping on the validation loss.

Audio branch: SGD with Nesterov momentum 0.9, lr 0.1 and 1e-6 learning-rate decay (the Keras-style
lr / (1 + decay * iteration) of the DCUE configuration the paper follows), one random crop of the
context duration per track and batch, early stopping on the validation AUC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ctxtag.common.training import EarlyStopping, run_epochs
from ctxtag.config import EmbeddingConfig
from ctxtag.embeddings.data import Histories, Ragged, random_crops, segments
from ctxtag.embeddings.losses import basic_binary, max_margin_hinge, multi_softmax
from ctxtag.embeddings.model import AudioCNN, SiameseRecommender, UserBranch


def variant(model: str) -> tuple[str, int, bool]:
    """'metric_1vs4' -> (loss 'metric', 4 disliked per liked, UE anchor); 'dcue_1vs1' -> lookup anchor."""
    if model == "basic_binary":
        return "binary", 0, True
    head, _, n = model.partition("_1vs")
    return ("metric" if head in ("metric", "dcue") else head), int(n), head != "dcue"


# --- user branch ---------------------------------------------------------------------------------
@dataclass
class Examples:
    """Liked tracks of the user branch: who, which (vocabulary index), and their history before it."""

    user: np.ndarray
    track: np.ndarray
    history: tuple[np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def build(cls, hist: Histories, user: np.ndarray, track: np.ndarray, until_s: np.ndarray) -> Examples:
        keep = track > 0
        return cls(user[keep], track[keep], hist.before(user[keep], until_s[keep]))


def _candidates(ex: Examples, disliked: Ragged, n_tracks: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 1 + k): the liked track, then k negatives — half the user's disliked tracks where they
    have any (explicit negatives), the rest sampled from the whole vocabulary."""
    own, has = disliked.sample(ex.user, k, rng)
    uniform = rng.integers(1, n_tracks + 1, size=own.shape)
    use_own = has[:, None] & (rng.random(own.shape) < 0.5) & (own > 0)
    return np.concatenate([ex.track[:, None], np.where(use_own, own, uniform)], axis=1)


def _user_loss(model: UserBranch, ex: Examples, cand: np.ndarray, demo: torch.Tensor, idx: np.ndarray,
               device: torch.device) -> torch.Tensor:
    t, a, s = (torch.from_numpy(h[idx]).to(device) for h in ex.history)
    ue = model(t, a, s, demo[torch.from_numpy(ex.user[idx]).to(device)])
    logits = model.logits(ue, torch.from_numpy(cand[idx]).to(device))
    return F.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long, device=device))


def fit_user_branch(train: Examples, val: Examples, disliked: Ragged, n_vocab: tuple[int, int, int],
                    demographics: np.ndarray, cfg: EmbeddingConfig, seed: int, device: torch.device,
                    batch_size: int = 256) -> tuple[UserBranch, list[dict]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = UserBranch(*n_vocab, dim=cfg.dim, hidden=cfg.user_hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.user_lr)
    demo = torch.from_numpy(demographics).to(device)
    val_cand = _candidates(val, disliked, n_vocab[0], cfg.user_negatives, np.random.default_rng(seed + 1))

    def train_epoch(epoch: int) -> dict:
        model.train()
        cand = _candidates(train, disliked, n_vocab[0], cfg.user_negatives, rng)
        total = 0.0
        for idx in np.array_split(rng.permutation(len(train.user)), max(1, -(-len(train.user) // batch_size))):
            loss = _user_loss(model, train, cand, demo, idx, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        return {"train_loss": total / max(len(train.user), 1)}

    @torch.no_grad()
    def validate(row: dict) -> dict:
        model.eval()
        if not len(val.user):                   # no validation users: stop on the training loss
            return {"val_loss": row["train_loss"]}
        return {"val_loss": float(_user_loss(model, val, val_cand, demo, np.arange(len(val.user)), device))}

    stopper = EarlyStopping(cfg.user_patience, model=model)
    history = run_epochs(cfg.user_epochs, train_epoch, validate, stopper)
    return stopper.restore().eval(), history


@torch.no_grad()
def user_embeddings(model: UserBranch, hist: Histories, demographics: np.ndarray, device: torch.device) -> np.ndarray:
    """UE of every user from their whole (visible) history and demographics: (n_users, dim)."""
    users = np.arange(len(demographics))
    t, a, s = (torch.from_numpy(h).to(device) for h in hist.before(users))
    return model.eval()(t, a, s, torch.from_numpy(demographics).to(device)).cpu().numpy()


def _device_input(mels: np.ndarray, device: torch.device) -> torch.Tensor:
    # channels-last convolutions are ~1.5x faster on CPU for this narrow CNN (benchmarks/bench_embeddings.py)
    x = torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32)).to(device)
    return x.unsqueeze(1).contiguous(memory_format=torch.channels_last).squeeze(1)


# --- audio branch --------------------------------------------------------------------------------
@dataclass
class Pairs:
    """(user, track) pairs of one split: user index, mel row of the track, liked (1) or disliked (0)."""

    user: np.ndarray
    row: np.ndarray
    liked: np.ndarray

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(self.user[mask], self.row[mask], self.liked[mask])


def _batches(train: Pairs, loss: str, n_neg: int, batch_size: int, rng: np.random.Generator):
    """(user index, track rows (b, 1 + n) or (b, 1), labels) per batch of one epoch."""
    if loss == "binary":
        order = rng.permutation(len(train.user))
        for idx in np.array_split(order, max(1, -(-len(order) // batch_size))):
            yield train.user[idx], train.row[idx, None], train.liked[idx]
        return
    liked = train.subset(train.liked == 1)
    disliked = train.subset(train.liked == 0)
    pool = Ragged(disliked.user, disliked.row, int(train.user.max()) + 1 if len(train.user) else 0)
    order = rng.permutation(len(liked.user))
    for idx in np.array_split(order, max(1, -(-len(order) // batch_size))):
        neg, has = pool.sample(liked.user[idx], n_neg, rng)
        idx = idx[has]
        yield liked.user[idx], np.concatenate([liked.row[idx, None], neg[has]], axis=1), None


def _loss(model: SiameseRecommender, loss: str, sim: torch.Tensor, labels, margin: float,
          device: torch.device) -> torch.Tensor:
    if loss == "metric":
        return max_margin_hinge(sim, margin)
    if loss == "multi":
        return multi_softmax(sim, model.scale)
    return basic_binary(sim, torch.from_numpy(labels).to(device), model.scale, model.bias)


@torch.no_grad()
def track_embeddings(cnn: AudioCNN, mels: np.ndarray, rows: np.ndarray, frames: int, device: torch.device,
                     n_segments: int = 3, batch: int = 96) -> np.ndarray:
    """Unit-norm AE per track: the mean of the unit AEs of ``n_segments`` evenly spaced
    segments of the first 30 s (1: the middle one, the cheap per-epoch validation)."""
    cnn.eval()
    out = [np.zeros((0, cnn.fc.out_features), dtype=np.float32)]
    for i in range(0, len(rows), batch):                 # bounded memory on any catalogue size
        x, s = segments(mels, rows[i: i + batch], frames, n_segments)
        ae = F.normalize(cnn(_device_input(x, device)).float(), dim=1)
        out.append(F.normalize(ae.view(-1, s, ae.shape[1]).mean(dim=1), dim=1).cpu().numpy())
    return np.concatenate(out)


def scores(anchors: np.ndarray, ae: np.ndarray, pairs: Pairs, ae_row: np.ndarray) -> np.ndarray:
    """Eq. 2 for each pair: cos(UE of its user, AE of its track); ``ae_row`` maps mel rows to ``ae``."""
    u = anchors[pairs.user]
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    return np.einsum("nd,nd->n", u, ae[ae_row[pairs.row]])


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def fit_audio(model_name: str, frames: int, mels: np.ndarray, train: Pairs, val: Pairs, n_users: int,
              anchors: np.ndarray | None, cfg: EmbeddingConfig, seed: int, device: torch.device,
              on_epoch: Callable[[dict], None] | None = None) -> tuple[SiameseRecommender, list[dict]]:
    """Train one row of Table 1; returns the model with its best validation-AUC weights."""
    loss_kind, n_neg, use_ue = variant(model_name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cnn = AudioCNN(mels.shape[1], cfg.dim, cfg.cnn_channels)
    model = SiameseRecommender(cnn, torch.from_numpy(anchors) if use_ue else None, n_users, cfg.dim)
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 / (1.0 + cfg.lr_decay * it))
    val_rows = np.unique(val.row)
    val_map = np.full(mels.shape[0], -1)
    val_map[val_rows] = np.arange(len(val_rows))

    def train_epoch(epoch: int) -> dict:
        model.train()
        total, n = 0.0, 0
        for users, rows, labels in _batches(train, loss_kind, n_neg, cfg.batch_size, rng):
            if len(users) < 2:                      # BatchNorm needs two
                continue
            uniq, slots = np.unique(rows, return_inverse=True)
            crops = _device_input(random_crops(mels, uniq, frames, rng), device)
            sim = model(torch.from_numpy(users).to(device), crops, torch.from_numpy(slots.reshape(rows.shape)).to(device))
            loss = _loss(model, loss_kind, sim, labels, cfg.margin, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(users), n + len(users)
        return {"train_loss": total / max(n, 1)}

    def validate(row: dict) -> dict:
        ae = track_embeddings(model.cnn, mels, val_rows, frames, device, n_segments=1)
        anchor = model.users(torch.arange(n_users, device=device)).detach().cpu().numpy()
        return {"val_auc": _auc(val.liked, scores(anchor, ae, val, val_map)), "lr": opt.param_groups[0]["lr"]}

    stopper = EarlyStopping(cfg.patience, mode="max", model=model)
    history = run_epochs(cfg.epochs, train_epoch, validate, stopper, monitor="val_auc", on_epoch=on_epoch)
    return stopper.restore().eval(), history
