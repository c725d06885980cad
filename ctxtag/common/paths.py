"""Where each stage reads and writes: one dataclass, filled from params.yaml ``paths:``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every path a stage reads or writes: folders (DVC outputs) and the files in them.

    dvc.yaml interpolates these same keys (``${paths.labels_csv}``), so a path lives in params.yaml
    alone. Per-item names (a loss configuration's checkpoint, a stage's report) come from the
    methods below, the only place that spells them.
    """

    raw: Path = Path("data/raw")
    playlists: Path = Path("data/raw/playlists.jsonl")
    tracks: Path | None = Path("data/raw/tracks.csv")
    truth: Path = Path("data/raw/truth")                     # synth's true labels (evaluation only)
    labelled: Path = Path("data/labelled")
    labels_csv: Path = Path("data/labelled/labels.csv")
    counts_csv: Path = Path("data/labelled/counts.csv")
    labelled_tracks_csv: Path = Path("data/labelled/tracks.csv")
    weights: Path = Path("data/weights")
    weights_npz: Path = Path("data/weights/weights.npz")
    splits: Path = Path("data/splits")
    split_csv: Path = Path("data/splits/split.csv")
    quarantine: Path = Path("data/quarantine")
    reports: Path = Path("reports")
    audio_root: Path = Path("data/raw")       # tracks.csv audio_path values are relative to this
    features: Path = Path("data/features")
    mel_cache: Path = Path("data/cache/mel")
    models: Path = Path("data/models")
    listening_logs: Path = Path("data/raw/listening_logs")   # incoming CSV / parquet drops
    incoming_logs: Path = Path("data/incoming/listening_logs")   # drops fetched by the Airflow DAG
    lake: Path = Path("data/lake/listening_logs")            # date=YYYY-MM-DD/part-*.parquet
    track_features: Path = Path("data/track_features")       # ctxtag track-features
    track_features_parquet: Path = Path("data/track_features/track_features.parquet")
    feast: Path = Path("data/feast")                         # Feast offline store: parquet, registry
    serving_cache: Path = Path("data/serving_cache")         # `ctxtag serve`: catalogue indexes per publication
    online: Path = Path("data/online")                       # ctxtag publish: the served Feast store (not DVC)
    data_docs: Path = Path("data/gx")                        # GX file context: suites, results, data docs
    streams: Path = Path("data/streams")                     # ctxtag streams: labelled streams + features
    streams_parquet: Path = Path("data/streams/streams.parquet")
    user_models: Path = Path("data/user_models")             # ctxtag user-models: <split>/<model>
    embedding_features: Path = Path("data/embedding_features")  # ctxtag embedding-features: Chen et al. log-mels
    embeddings: Path = Path("data/embeddings")               # ctxtag embeddings: branches, UE / AE tables
    track_embeddings_parquet: Path = Path("data/embeddings/track_embeddings.parquet")
    user_embeddings_parquet: Path = Path("data/embeddings/user_embeddings.parquet")
    timings: Path = Path("data/timings.jsonl")               # each command's wall time (ctxtag summary), not DVC

    @property
    def true_labels_csv(self) -> Path:
        return self.truth / "true_labels.csv"

    @property
    def cooccurrence_csv(self) -> Path:
        return self.labelled / "cooccurrence.csv"

    def model_dir(self, loss: str) -> Path:
        """data/models/<loss configuration>/ (dvc.yaml: ``${paths.models}/${item}``)."""
        return self.models / loss

    def checkpoint(self, loss: str, which: str = "best") -> Path:
        """The tagger's ``best.pt`` (or ``last.pt``) of one loss configuration."""
        return self.model_dir(loss) / f"{which}.pt"

    def mlflow_run(self, loss: str) -> Path:
        """The MLflow run a loss configuration's training logs to (resumed with it)."""
        return self.model_dir(loss) / "mlflow_run.json"

    @property
    def user_branch_pt(self) -> Path:
        """Chen et al.'s serving user branch (ctxtag.embeddings.artifacts.load_user_branch)."""
        return self.embeddings / "user_branch.pt"

    @property
    def gate_pairs_parquet(self) -> Path:
        """The liked / disliked (user, new track) pairs the embeddings' promotion gate scores."""
        return self.embeddings / "gate_pairs.parquet"

    @property
    def transfer_json(self) -> Path:
        return self.embeddings / "transfer.json"

    def report(self, name: str) -> Path:
        """reports/<name>.json: a stage's metrics (dvc.yaml: ``${paths.reports}/<name>.json``)."""
        return self.reports / f"{name}.json"

    def plot(self, name: str) -> Path:
        return self.reports / "plots" / f"{name}.png"

    def quarantined(self, name: str) -> Path:
        """data/quarantine/<name>.jsonl: the rows a reader or gate set aside, with their reasons."""
        return self.quarantine / f"{name}.jsonl"
