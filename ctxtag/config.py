"""Typed configuration: params.yaml is parsed here once and passed on as dataclasses.

Nothing deeper in the package reads params.yaml or the environment for settings; each stage
takes the dataclass it needs, so the CLI, DVC and Airflow run the same code with the same
values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ctxtag.common.paths import Paths
from ctxtag.common.typed_yaml import ConfigError, build
from ctxtag.vocabulary import (
    CONTEXTS,
    DEVICES,
    EMBEDDING_MODELS,
    FEEDBACK,
    GENDERS,
    LOSS_CONFIGS,
    NETWORKS,
    POSITIVE_SCALINGS,
    SPLIT_KINDS,
    WEIGHT_FITS,
)


@dataclass(frozen=True)
class SynthConfig:
    """The generated world. The defaults are `make demo`'s (~420 tracks, 6 s clips: five minutes on
    2 cores); params.reproduce.yaml is the larger world `make reproduce` runs."""

    n_artists: int = 80
    albums_per_artist: tuple[int, int] = (1, 2)
    tracks_per_album: tuple[int, int] = (2, 5)
    n_users: int = 60
    n_context_playlists: int = 450
    n_noise_playlists: int = 60
    n_filtered_playlists: int = 16
    playlist_len: tuple[int, int] = (8, 45)
    stray_track_share: float = 0.08
    popularity_alpha: float = 1.4
    n_events: int = 10000
    start_date: str = "2026-01-05"
    days: int = 28
    clip_seconds: float = 6.0
    sample_rate: int = 22050
    audio_format: str = "flac"


@dataclass(frozen=True)
class LabelConfig:
    max_tracks: int = 100
    max_artist_share: float = 0.25
    max_album_share: float = 0.25
    min_playlists: int = 3
    balance: bool = True
    balance_cap: int | None = 64            # None: the rarest context's size (the paper; make reproduce)


@dataclass(frozen=True)
class WeightsConfig:
    pairwise: bool = True
    fit_on: str = "train"                   # train: estimated on the training split's labels; all: every track's
    positive_scaling: str = "mean"          # mean: unit mean (default); mean_std: unit mean, unit variance

    def __post_init__(self) -> None:
        if self.fit_on not in WEIGHT_FITS:
            raise ConfigError(f"weights.fit_on must be one of {list(WEIGHT_FITS)}, not {self.fit_on!r}")
        if self.positive_scaling not in POSITIVE_SCALINGS:
            raise ConfigError(f"weights.positive_scaling must be one of {list(POSITIVE_SCALINGS)}, "
                              f"not {self.positive_scaling!r}")


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.65
    validation: float = 0.10
    test: float = 0.25

    def ratios(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class LogsConfig:
    """Rules for listening-log rows (ISMIR 2022 signals); a row breaking one is quarantined."""

    devices: tuple[str, ...] = DEVICES
    networks: tuple[str, ...] = NETWORKS
    genders: tuple[str, ...] = GENDERS
    min_age: int = 5
    max_age: int = 110
    max_future_s: float = 300.0     # clock skew tolerated before a timestamp counts as future
    feedback: tuple[str, ...] = FEEDBACK   # optional per-event feedback (Chen et al.)


@dataclass(frozen=True)
class TrackFeaturesConfig:
    """`ctxtag track-features` as a partitioned batch job (ctxtag.tagger.batch)."""

    partitions: int = 8               # N; changing it redoes every partition
    batch_size: int = 32              # mels per forward pass (padded; a multiple of 16: see inference.infer)
    chunk_tracks: int = 256           # tracks decoded (mels in memory) at once: ~124 KB each at 96 x 646
    device: str = "cpu"               # cpu | cuda | auto

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.batch_size < 1 or self.chunk_tracks < 1:
            raise ConfigError(f"track_features: partitions, batch_size and chunk_tracks must be >= 1: {self}")


@dataclass(frozen=True)
class DataPlaneConfig:
    """Where the listening-data plane (ingest, user snapshots) runs: see ctxtag.listening.engine."""

    engine: str = "duckdb"          # duckdb: embedded, out of core | spark: pyspark (local[*] or a cluster)
    memory_limit: str = "4GB"       # DuckDB spills to disk past this
    spark_master: str | None = None  # e.g. spark://host:7077; default $CTXTAG_SPARK_MASTER, else local[*]

    def __post_init__(self) -> None:
        if self.engine not in ("duckdb", "spark"):
            raise ConfigError(f"data_plane.engine must be duckdb or spark, not {self.engine!r}")


@dataclass(frozen=True)
class AudioConfig:
    """Front-end of ICASSP 2020 §4.1: 30 s from 30 s, 96 log-mel bands, 646 frames."""

    sample_rate: int = 22050
    offset_s: float = 30.0          # tracks shorter than offset + duration are cropped from 0
    duration_s: float = 30.0
    n_fft: int = 1024
    hop_length: int = 1024
    n_mels: int = 96
    power: float = 2.0              # mel power spectrogram, as librosa.feature.melspectrogram
    log_scale: float = 100.0        # log(1 + log_scale * x)
    silence_rms: float = 1e-4       # clips quieter than this are reported and skipped

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "neg_ignore_zeros"          # one of LOSS_CONFIGS (Table 2)
    configs: tuple[str, ...] = LOSS_CONFIGS  # what the DVC pipeline trains side by side
    batch_size: int = 16
    max_epochs: int = 3                     # CPU demo cap; the paper stops on patience (make reproduce: 200)
    patience: int = 10                      # early stopping on validation loss
    lr: float = 0.1                         # Adadelta
    lr_decay: float = 0.96                  # multiplied in every lr_decay_every iterations
    lr_decay_every: int = 1000
    dropout: float = 0.3
    num_workers: int = 0
    amp: bool = True                        # mixed precision when on CUDA
    device: str = "auto"                    # auto | cpu | cuda
    log_mlflow: bool = True
    experiment: str = "ctxtag-audio-tagger"

    def __post_init__(self) -> None:
        for name in (self.loss, *self.configs):
            if name not in LOSS_CONFIGS:
                raise ConfigError(f"train: unknown loss configuration {name!r}; one of {LOSS_CONFIGS}")


@dataclass(frozen=True)
class EvalConfig:
    threshold: float = 0.5
    bootstrap: int = 1000                   # resamples of the test tracks for intervals and paired tests (0: none)
    level: float = 0.95                     # interval coverage


@dataclass(frozen=True)
class UserModelConfig:
    """User-aware (ISMIR 2020) and situational/joint (ISMIR 2022) models and their evaluation."""

    history_dim: int = 32                   # user history embedding (SVD fold-in) size
    splits: tuple[str, ...] = SPLIT_KINDS
    audio_hidden: int = 128                 # user-aware tagger: audio branch width
    user_hidden: int = 64                   # ... user branch width
    fused_hidden: int = 128
    dropout: float = 0.3
    epochs: int = 40                        # early stopping decides (make reproduce: 80)
    patience: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    gbt_max_iter: int = 120                 # situational / joint gradient-boosted trees (make reproduce: 300)
    gbt_learning_rate: float = 0.08
    gbt_max_leaf_nodes: int = 31
    top_k: int = 3                          # accuracy@k, weighted accuracy@k (ISMIR 2022)
    threshold: float = 0.5                  # multi-label output (MO-*) of the audio tagger
    log_mlflow: bool = True
    experiment: str = "ctxtag-user-models"

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLIT_KINDS)
        if unknown or not self.splits:
            raise ConfigError(f"user_models.splits: unknown {sorted(unknown)}; use {list(SPLIT_KINDS)}")


def chen_audio() -> AudioConfig:
    """Chen et al. §3.1: 128 log-mel bins at 22,050 Hz, hop 512, the first 30 s of the track."""
    return AudioConfig(offset_s=0.0, duration_s=30.0, n_fft=2048, hop_length=512, n_mels=128)


@dataclass(frozen=True)
class EmbeddingConfig:
    """Chen et al.: user branch (UE), Siamese audio branch (AE), their evaluation and serving."""

    min_liked: int = 10                     # users need this many liked and disliked tracks (§3.1)
    min_disliked: int = 10
    split: SplitConfig = field(default_factory=lambda: SplitConfig(0.6, 0.2, 0.2))
    dim: int = 40                           # UE and AE size
    history_len: int = 50                   # the last plays the user branch averages
    user_hidden: tuple[int, ...] = (128, 64)   # FC + leaky ReLU layers before the 40-d UE
    user_negatives: int = 8                 # sampled negatives per liked track (user branch)
    user_epochs: int = 60
    user_patience: int = 6
    user_lr: float = 1e-3                   # Adam (the paper gives no optimiser for the user branch)
    # the demo's; make reproduce: + metric_1vs4 and 3 s / 10 s crops of the first 30 s, as in the paper
    models: tuple[str, ...] = ("basic_binary", "metric_1vs1")
    durations: tuple[float, ...] = (3.0, 6.0)    # context duration: a random crop of the clip
    best_model: str = "metric_1vs1"         # what the paper keeps (Metric-1vs1-10s): Feast, serving, transfer
    best_duration: float = 6.0
    margin: float = 0.2                     # Eq. 3
    cnn_channels: tuple[int, ...] = (8, 16, 32, 64, 64)
    eval_segments: int = 3                  # a track's AE: the mean over this many evenly spaced crops
    epochs: int = 1                         # CPU demo cap (make reproduce: 50, on a GPU worker)
    patience: int = 3                       # early stopping on validation AUC
    batch_size: int = 64                    # liked tracks per batch (plus their disliked ones)
    lr: float = 0.1                         # SGD, Nesterov momentum 0.9, lr / (1 + decay * iteration)
    momentum: float = 0.9
    lr_decay: float = 1e-6
    hit_k: tuple[int, ...] = (5, 10, 20)    # hit rate @K of new tracks
    ann_min_tracks: int = 50_000            # catalogues at least this large are searched with HNSW
    ann_m: int = 32                         # HNSW graph degree
    ann_ef_search: int = 128
    transfer_pca: int = 128                 # §3.3: PCA to 128, RBF SVM (gamma 1/128, C 1)
    device: str = "auto"
    log_mlflow: bool = True
    experiment: str = "ctxtag-embeddings"

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(EMBEDDING_MODELS)
        if unknown or not self.models:
            raise ConfigError(f"embeddings.models: unknown {sorted(unknown)}; use {list(EMBEDDING_MODELS)}")
        if self.best_model not in self.models or self.best_duration not in self.durations:
            raise ConfigError(f"embeddings.best_model/best_duration ({self.best_model}, {self.best_duration}) "
                              f"must be among models {list(self.models)} and durations {list(self.durations)}")
        if any(d <= 0 or d > 30 for d in self.durations):
            raise ConfigError(f"embeddings.durations: each in (0, 30] s (a crop of the first 30 s), got {self.durations}")


@dataclass(frozen=True)
class RegistryConfig:
    """MLflow registry and the promotion gate (challenger vs champion on the same test split)."""

    model_name: str = "ctxtag-audio-tagger"
    context_model_name: str = "ctxtag-context-model"   # the pyfunc: audio + optional user/device/time
    embeddings_model_name: str = "ctxtag-listening-embeddings"   # Chen et al.: the served AE / UE
    max_context_drop: float = 0.02         # no context's ROC-AUC may fall by more than this
    context_gate_streams: int = 400         # test streams the context model's gate scores (seeded sample)


@dataclass(frozen=True)
class QualityConfig:
    """Great Expectations gates (ctxtag validate)."""

    max_bad_share: float = 0.01             # rows failing a row-level expectation: quarantined up to this share
    min_label_share: float = 0.01           # label balance: each context's positive share in [min, max]
    max_label_share: float = 0.9
    max_playlist_tracks: int = 10000


@dataclass(frozen=True)
class ServingConfig:
    """The HTTP API (`ctxtag serve`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    split: str = "warm"                     # which split's user models answer requests
    max_upload_mb: int = 20                 # an upload's compressed bytes (413 beyond, before reading)
    max_body_kb: int = 64                   # a JSON request body
    workers: int = 1                        # worker processes, a socket each (ctxtag.serving.workers)
    threads: int = 1                        # per worker: threads running request handlers (the rest queue)
    store_timeout_ms: int = 200             # one online-store read; past it (one retry) the request gets 503
    reload_s: float = 10.0                  # how often the service looks for republished features
    exhaustive_max: int = 20_000            # /recommend scores catalogues up to this size whole
    prototypes: int = 64                    # beyond it, two stages: user prototypes (k-means) ...
    per_list: int = 200                     # ... each with its top tracks per context ...
    probes: int = 3                         # ... of which a request re-scores its nearest prototypes'
    api_keys_env: str = "CTXTAG_API_KEYS"   # comma-separated keys; unset = no authentication (demo)
    rate_per_s: float = 200.0               # per API key: sustained requests per second
    burst: int = 400                        # per API key: requests allowed at once
    shadow: bool = False                    # also score requests with @challenger, off the request path
    shadow_queue: int = 64                  # requests waiting for the shadow at most (more are dropped, counted)
    shadow_flush_s: float = 10.0            # how often the agreement is written to the registry


@dataclass(frozen=True)
class RobustnessConfig:
    """`ctxtag robustness`: perturbations of the test audio (ctxtag/audio/perturb.py, kind:value).
    The demo runs the cheap three; make reproduce adds time-stretch and pitch-shift."""

    perturbations: tuple[str, ...] = ("gain:-6", "noise:20", "mp3:64")


@dataclass(frozen=True)
class TaggingConfig:
    """A whole track's contexts (`ctxtag predict --track`, ``ctxtag.tag(track=True)``, the track-level
    row of `ctxtag robustness`): the mean of the tagger's probabilities over back-to-back windows
    of its crop length, as production taggers do, beside the paper's one crop. A long track is
    read up to ``max_track_s`` and scored on at most ``max_windows`` windows spread evenly over it."""

    max_windows: int = 16
    max_track_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_windows < 1 or not self.max_track_s > 0:
            raise ConfigError(f"tagging: max_windows must be >= 1 and max_track_s > 0: {self}")


DEMO_CLIP_S = 6.0          # the demo world's clip length, which both front-ends crop whole


@dataclass(frozen=True)
class Params:
    seed: int = 42
    contexts: tuple[str, ...] = CONTEXTS
    paths: Paths = field(default_factory=Paths)
    synth: SynthConfig = field(default_factory=SynthConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    data_plane: DataPlaneConfig = field(default_factory=DataPlaneConfig)
    track_features: TrackFeaturesConfig = field(default_factory=TrackFeaturesConfig)
    # the papers' front-ends on the demo's 6 s clips: the paper's 30 s crops in make reproduce
    audio: AudioConfig = field(default_factory=lambda: AudioConfig(duration_s=DEMO_CLIP_S))
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    tagging: TaggingConfig = field(default_factory=TaggingConfig)
    user_models: UserModelConfig = field(default_factory=UserModelConfig)
    embedding_audio: AudioConfig = field(default_factory=lambda: replace(chen_audio(), duration_s=DEMO_CLIP_S))
    embeddings: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        if len(set(self.contexts)) != len(self.contexts) or not self.contexts:
            raise ConfigError(f"contexts must be a non-empty list of unique names: {self.contexts}")
        total = sum(self.split.ratios().values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"split ratios must sum to 1, got {total}")
        if self.serving.split not in self.user_models.splits:
            raise ConfigError(f"serving.split {self.serving.split!r} is not trained: user_models.splits is "
                              f"{list(self.user_models.splits)}")


def params_from_dict(data: dict[str, Any]) -> Params:
    return build(Params, data)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml; a missing file gives the embedded defaults."""
    path = Path(path)
    if not path.exists():
        return Params()
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params_from_dict(data)
