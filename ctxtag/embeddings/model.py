"""Chen et al.: audio embeddings learnt with user listening data, readable top to bottom.

User branch (§2.1, Fig. 1), after YoutubeDNN:

    history tracks  -> lookup 40-d -> average ┐
    history albums  -> lookup 40-d -> average ├ concat -> [FC -> leaky ReLU] x hidden -> FC 40 -> leaky ReLU = UE
    history artists -> lookup 40-d -> average │
    demographics (age, age known, gender)    ┘
    output layer: logit(x_t) = UE . v(x_t) + b(x_t)      (one output vector per candidate track)

    trained as "liked x_t vs sampled negatives" with cross-entropy; UE is the state before the
    output layer. Unknown ids (a new user's plays of tracks outside the vocabulary) map to 0, the
    padding index, which the averages skip.

Audio branch (§2.2, Fig. 2): a Siamese CNN — one set of weights embeds every track of a pair:

    log-mel (1 x 128 x frames of the context duration)
    BatchNorm on the input
    5 x [conv 3x3 -> BatchNorm -> ReLU -> max-pool 2x2]
    global max-pool over frequency and time (so 3 s and 10 s crops share the architecture)
    FC 40, no activation = AE

    M(r, u) = u.r / (|u| |r|)                                   (Eq. 2)

The paper does not give filter counts, kernel sizes or the pooling before the feature layer; those
are ours (params ``embeddings.cnn_channels``). BatchNorm is not mentioned either; it is what lets
plain SGD at lr 0.1 (the paper's setting) train this CNN stably.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_DEMOGRAPHICS = 6          # age (standardised), age known, gender one-hot f / m / x / unknown


class UserBranch(nn.Module):
    def __init__(self, n_tracks: int, n_albums: int, n_artists: int, dim: int = 40,
                 hidden: tuple[int, ...] = (128, 64), slope: float = 0.01):
        super().__init__()
        # index 0 is padding / unknown in every vocabulary
        self.tracks = nn.EmbeddingBag(n_tracks + 1, dim, mode="mean", padding_idx=0)
        self.albums = nn.EmbeddingBag(n_albums + 1, dim, mode="mean", padding_idx=0)
        self.artists = nn.EmbeddingBag(n_artists + 1, dim, mode="mean", padding_idx=0)
        layers, width = [], 3 * dim + N_DEMOGRAPHICS
        for h in (*hidden, dim):
            layers += [nn.Linear(width, h), nn.LeakyReLU(slope)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Embedding(n_tracks + 1, dim)          # output layer: one vector per track
        self.out_bias = nn.Embedding(n_tracks + 1, 1)
        nn.init.normal_(self.out.weight, std=0.05)
        nn.init.zeros_(self.out_bias.weight)

    def forward(self, tracks: torch.Tensor, albums: torch.Tensor, artists: torch.Tensor,
                demographics: torch.Tensor) -> torch.Tensor:
        """History id matrices (batch, history_len), 0-padded, and demographics -> UE (batch, dim)."""
        x = torch.cat([self.tracks(tracks), self.albums(albums), self.artists(artists), demographics], dim=1)
        return self.mlp(x)

    def logits(self, ue: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """UE (batch, dim), candidate track ids (batch, k) -> logits (batch, k)."""
        return torch.einsum("bd,bkd->bk", ue, self.out(candidates)) + self.out_bias(candidates).squeeze(-1)


class AudioCNN(nn.Module):
    def __init__(self, n_mels: int = 128, dim: int = 40, channels: tuple[int, ...] = (8, 16, 32, 64, 64)):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        blocks, c_in = [], 1
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, dim)                       # the feature vector layer: no ReLU

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (batch, n_mels, frames) -> AE (batch, dim)."""
        x = self.features(self.input_bn(mel.unsqueeze(1)))
        return self.fc(x.amax(dim=(2, 3)))


def similarity(u: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Eq. 2, cosine of UE and AE over the last dimension (broadcasting)."""
    return F.cosine_similarity(u, r, dim=-1, eps=1e-8)


class SiameseRecommender(nn.Module):
    """The audio branch with its anchor: the user branch's UE (fixed, given per user) or, for the
    DCUE-1vs1 baseline [12], a lookup embedding per user index learnt with the CNN.

    ``scale`` and ``bias`` turn a similarity into a logit for Basic-Binary (sigmoid) and the Multi
    models (softmax); the paper does not say how a cosine in [-1, 1] enters those, so they are
    learnt. The metric models use the raw cosine (Eq. 3) and ignore them.
    """

    def __init__(self, cnn: AudioCNN, user_anchor: torch.Tensor | None = None, n_users: int = 0, dim: int = 40):
        super().__init__()
        self.cnn = cnn
        if user_anchor is not None:
            self.register_buffer("anchor", user_anchor.float())
            self.user_lookup = None
        else:
            self.user_lookup = nn.Embedding(n_users, dim)
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def users(self, idx: torch.Tensor) -> torch.Tensor:
        return self.anchor[idx] if self.user_lookup is None else self.user_lookup(idx)

    def forward(self, user_idx: torch.Tensor, mels: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """user_idx (batch,); mels (u, n_mels, frames) of the batch's distinct tracks; slots (batch, k)
        pick each row's liked / disliked tracks among them -> similarities M (batch, k).

        A track that appears in several rows of a batch goes through the CNN once (the Siamese
        weights are shared, so this is the same function, computed less often)."""
        ae = self.cnn(mels)
        return similarity(self.users(user_idx)[:, None, :], ae[slots])
