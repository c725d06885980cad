"""`ctxtag track-features`: the trained tagger's context probabilities and embedding per track.

Covers the whole catalogue, not only the labelled tracks the tagger was trained on; mels come
through the same content-hash cache as `ctxtag features`, so the labelled ones are not recomputed
and a growing catalogue never retrains the models.

A partitioned, resumable job (ctxtag.tagger.batch): the catalogue is split into N stable
partitions, each tagged into its own part (skipped when its key — checkpoint, front-end, code and
the partition's audio content — is unchanged), then the parts are combined into
``paths.track_features_parquet`` in catalogue order. Airflow can fan the partitions out over
workers with the same functions (plan_partitions, run_partition, combine).
"""

from __future__ import annotations

from ctxtag.config import ConfigError, Params
from ctxtag.tagger.batch import batch_config, combine, run_all, run_partition


def parse_partition(text: str, partitions: int) -> tuple[int, int]:
    """"k/N" -> (k, N): N must be the configured number of partitions (parts of another N are not
    combined, and combine removes them), and 0 <= k < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--partition {text!r}: expected k/N, e.g. 3/{partitions}") from None
    if n != partitions:
        raise ConfigError(f"--partition {text!r}: the catalogue is split into {partitions} partitions, not {n}")
    if not 0 <= k < n:
        raise ConfigError(f"--partition {text!r}: k must be in 0..{n - 1}")
    return k, n


def run(params: Params, partition: str | None = None, combine_only: bool = False) -> dict:
    """All partitions then combine (default); one partition ("k/N"); or only the combine step."""
    if partition is not None:
        return run_partition(params, *parse_partition(partition, batch_config(params).partitions))
    if combine_only:
        return combine(params)
    return run_all(params)
