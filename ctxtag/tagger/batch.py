"""Catalogue-scale batch tagging: the tagger over every catalogue track as N independent partitions.

    plan_partitions(params)        -> [k, ...]   the partitions to run (all, or only the stale ones)
    run_partition(params, k, n)    -> dict       one partition -> parts/part-<k>-of-<n>.parquet
    combine(params, results)       -> dict       the parts -> track_features.parquet (+ its report)
    run_all(params)                -> dict       all three in one process (`ctxtag track-features`)

Partitions. Track t is in partition ``sha256(t)[:8] mod N``: deterministic on every machine and
Python (unlike ``hash()``), every track in exactly one, and a track's partition depends on nothing
but its id, so a growing catalogue only invalidates the partitions its new tracks land in
(contiguous ranges of the sorted ids would shift every boundary after an insertion).

Work. A partition decodes and mels its tracks through the content-hash mel cache ``chunk_tracks``
at a time and infers in padded mini-batches, appending each chunk to the part as a row group: its
memory is bounded by the chunk, never the partition nor the catalogue. The part is written under a
temporary name and renamed (``atomic_path``): a kill -9 leaves finished parts whole and the killed
one absent (or its previous version), never half a file.

Idempotence. A part records its key in the file's metadata: sha256 of the checkpoint's bytes, the
front-end key (audio settings + front-end code, as the mel cache), this tagging code, and the
partition's (track_id, audio sha256) list in catalogue order. A rerun whose key matches skips the
partition without writing. The audio fingerprint is the content hash (what the mel cache keys on:
touching, copying or moving a file changes nothing), but hashing the whole catalogue at every
rerun would read every audio byte, so each part memoises every file's sha256 against its
(path, size, mtime_ns) and a rerun only stats the files, hashing just those whose stat changed —
as git's index does, including its "racy" rule: a file modified within RACY_NS of being hashed is
hashed again next time (same size, same mtime tick, other bytes would otherwise go unnoticed).
Batch size and device are left out of the key (recorded beside it): they change the floats only
in the last bits, and a throughput setting should not recompute a catalogue.

Combine. The parts, each in catalogue order, are merged back into catalogue order chunk by chunk
(a k-way merge reading one row group per part at a time) into one parquet written with pyarrow's
ParquetWriter: the same rows, columns and schema as the single-frame writer it replaces.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ctxtag.audio import mel_cache
from ctxtag.common.io import atomic_path, audio_paths, file_sha256, source_digest, write_json
from ctxtag.common.progress import progress
from ctxtag.config import Params, TrackFeaturesConfig
from ctxtag.tagger import inference
from ctxtag.tagger import model as model_code

PART_FORMAT = 1                      # bump when a part's layout changes: every part is redone
META = b"ctxtag.track_features"       # the part's key, memo and stats in the parquet footer
COMBINED = b"ctxtag.track_features.parts"   # the combined file: the hash of its parts' keys
PART_ROW_GROUP = 256                  # rows per row group of a part (combine reads one at a time)
COMBINE_CHUNK = 8192                  # catalogue positions per written chunk of the combined file
RACY_NS = 2_000_000_000               # mtime this close to hashing: not memoised (git's racy rule)


BatchConfig = TrackFeaturesConfig     # the job's knobs: params.track_features


def batch_config(params: Params) -> BatchConfig:
    return params.track_features


def parts_dir(params: Params) -> Path:
    """Beside the mel cache (data/cache/track_features), not in the DVC output: `dvc repro` clears
    its outputs before running a stage, which would throw the finished partitions away."""
    p = params.paths
    return p.mel_cache.parent / "track_features"


def part_path(params: Params, k: int, n: int, folder: Path | None = None) -> Path:
    return (folder or parts_dir(params)) / f"part-{k}-of-{n}.parquet"


def model_parts_dir(params: Params, model_sha: str) -> Path:
    """The parts of another checkpoint than the pipeline's (a registry @champion's, for the
    serving publication): one folder per checkpoint's bytes, so a rollback finds its parts."""
    return parts_dir(params) / "models" / model_sha[:16]


class PartitionsNotReady(FileNotFoundError):
    """combine() found partitions missing or out of date (run them first)."""


def partition_of(track_ids: Iterable[str], n: int) -> np.ndarray:
    """Each track's partition: the first 8 bytes of sha256(track_id), mod n."""
    ids = list(track_ids)
    return np.fromiter((int.from_bytes(hashlib.sha256(str(t).encode()).digest()[:8], "big") % n for t in ids),
                       dtype=np.int64, count=len(ids))


@cache
def code_version() -> str:
    """The code between a mel and a part's values: the model, inference and this module."""
    return source_digest((model_code, inference, sys.modules[__name__]))


@cache
def _checkpoint_sha(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))           # once per process and checkpoint version


def checkpoint_sha(path: Path) -> str:
    st = path.stat()
    if time.time_ns() - st.st_mtime_ns < RACY_NS:   # just written: may be rewritten within the tick
        return file_sha256(path)
    return _checkpoint_sha(str(path.resolve()), st.st_size, st.st_mtime_ns)


def fingerprints(paths: list[Path], memo: dict[str, list]) -> tuple[list[str], dict[str, list]]:
    """(sha256 of each file or "missing", the memo to store: path -> [size, mtime_ns or None, sha])."""
    shas, new_memo = [], {}
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            shas.append("missing")
            continue
        old = memo.get(str(path))
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            sha = old[2]
        else:
            sha = file_sha256(path)
        racy = time.time_ns() - st.st_mtime_ns < RACY_NS
        new_memo[str(path)] = [st.st_size, None if racy else st.st_mtime_ns, sha]
        shas.append(sha)
    return shas, new_memo


def read_part_meta(path: Path) -> dict | None:
    """A part's footer metadata, or None when there is no part or it cannot be read (then it is redone)."""
    if not path.exists():
        return None
    try:
        return json.loads(pq.read_metadata(path).metadata[META])
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        print(f"warning: {path}: unreadable part ({exc}); redoing it", file=sys.stderr)
        return None


@dataclass
class PartState:
    k: int
    n: int
    path: Path
    track_ids: list[str]
    paths: list[Path]
    key: str
    memo: dict[str, list]
    meta: dict | None                 # the part on disk, if any

    @property
    def current(self) -> bool:
        return self.meta is not None and self.meta.get("key") == self.key


@dataclass
class Job:
    """One catalogue, checkpoint and N, read once and shared by the partitions run in a process."""

    params: Params
    config: BatchConfig
    track_ids: list[str]              # catalogue order
    paths: list[Path]
    partition: np.ndarray
    checkpoint: Path
    model_sha: str
    parts: Path                       # the folder of the parts
    label: str                        # the "tagger" column: which model computed the features
    _model: tuple[Any, dict] | None = field(default=None, repr=False)
    _rows: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return self.config.partitions

    def device(self) -> torch.device:
        dev = self.config.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(dev)

    def model(self) -> tuple[Any, dict]:
        if self._model is None:
            self._model = inference.load_cnn(self.checkpoint, self.device())
        return self._model

    def state(self, k: int) -> PartState:
        if not 0 <= k < self.n:
            raise ValueError(f"partition {k} is not one of 0..{self.n - 1}")
        if self._rows is None:                # catalogue rows of each partition, in catalogue order
            order = np.argsort(self.partition, kind="stable")
            self._rows = np.split(order, np.searchsorted(self.partition[order], np.arange(1, self.n)))
        rows = self._rows[k]
        ids, paths = [self.track_ids[i] for i in rows], [self.paths[i] for i in rows]
        path = part_path(self.params, k, self.n, self.parts)
        meta = read_part_meta(path)
        shas, memo = fingerprints(paths, (meta or {}).get("memo", {}))
        key = {"format": PART_FORMAT, "model": self.model_sha, "frontend": mel_cache.config_key(self.params.audio),
               "code": code_version(), "partition": [k, self.n], "tracks": [[t, s] for t, s in zip(ids, shas, strict=True)]}
        digest = hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()
        return PartState(k, self.n, path, ids, paths, digest, memo, meta)


def job(params: Params, n: int | None = None, config: BatchConfig | None = None, *,
        checkpoint: Path | None = None, label: str | None = None) -> Job:
    """The pipeline's job (the train.loss checkpoint, labelled cnn-<loss>), or another
    checkpoint's (``checkpoint``, e.g. a registry @champion's, labelled ``label``) with its parts
    in a folder of its own (model_parts_dir: a retrain that rewrites the pipeline's parts never
    touches them; ``seed`` links the pipeline's where they are the same)."""
    config = config or batch_config(params)
    if n is not None and n != config.partitions:
        config = BatchConfig(**{**asdict(config), "partitions": n})
    p = params.paths
    pipeline = p.checkpoint(params.train.loss)
    checkpoint = checkpoint or pipeline
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: no trained model; run `dvc repro` or `ctxtag train` first")
    sha = checkpoint_sha(checkpoint)
    audio_of = audio_paths(p.tracks)
    ids = [str(t) for t in audio_of.index]
    return Job(params, config, ids, [p.audio_root / a for a in audio_of], partition_of(ids, config.partitions),
               checkpoint, sha, parts_dir(params) if checkpoint == pipeline else model_parts_dir(params, sha),
               label or f"cnn-{params.train.loss}")


def seed(j: Job, source: Job) -> int:
    """Hard-link ``source``'s current parts into ``j``'s folder where ``j``'s are missing or stale
    and the keys agree (the same checkpoint bytes, audio and code): the pipeline's work serves a
    champion without copying or recomputing, and a later retrain replaces the pipeline's files
    (by rename) without touching these. Returns the parts linked."""
    import os

    if source.model_sha != j.model_sha or source.parts == j.parts or source.n != j.n:
        return 0
    linked = 0
    for k in range(j.n):
        mine, theirs = j.state(k), source.state(k)
        if mine.current or not theirs.current or mine.key != theirs.key:
            continue
        with atomic_path(mine.path) as tmp:          # linked beside, renamed over: never a half state
            os.link(theirs.path, tmp)
        linked += 1
    return linked


def plan_partitions(params: Params, stale_only: bool = False, config: BatchConfig | None = None) -> list[int]:
    """The partitions a fan-out should run: all N (each skips itself when current), or only the
    stale ones (fewer tasks; stats every audio file, reads no audio unless its stat changed)."""
    j = job(params, config=config)
    return [k for k in range(j.n) if not (stale_only and j.state(k).current)]


def _part_schema(m: int, d: int) -> pa.Schema:
    return pa.schema([("track_id", pa.string()), ("context_probs", pa.list_(pa.float32(), m)),
                      ("audio_embedding", pa.list_(pa.float32(), d))])


def _part_table(ids: list[str], probs: np.ndarray, embs: np.ndarray, schema: pa.Schema) -> pa.Table:
    m, d = probs.shape[1], embs.shape[1]
    return pa.table([pa.array(ids, pa.string()),
                     pa.FixedSizeListArray.from_arrays(pa.array(probs.astype(np.float32).ravel()), m),
                     pa.FixedSizeListArray.from_arrays(pa.array(embs.astype(np.float32).ravel()), d)], schema=schema)


def run_partition(params: Params, k: int, n: int | None = None, *, config: BatchConfig | None = None,
                  in_job: Job | None = None) -> dict:
    """Partition k of n -> its part, unless the part on disk is current (then nothing is written)."""
    j = in_job or job(params, n, config)
    st = j.state(k)
    result = {"partition": k, "partitions": j.n, "part": str(st.path), "tracks_in_partition": len(st.track_ids)}
    if st.current:
        return {**result, "reused": True, "tracks": st.meta["tracks"], "skipped": len(st.meta["skipped"]),
                "mel_cache_hits": 0, "seconds": 0.0}
    start = time.perf_counter()
    cfg, p = j.config, params.paths
    model, meta = j.model()
    m, d = model.head.out_features, model.fc.out_features
    schema = _part_schema(m, d)
    skipped, hits, rows = [], 0, 0
    with atomic_path(st.path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for lo in range(0, len(st.track_ids), cfg.chunk_tracks):
            hi = lo + cfg.chunk_tracks
            mels = mel_cache.extract(st.track_ids[lo:hi], st.paths[lo:hi], params.audio, p.mel_cache)
            probs, embs = inference.infer(model, mels.mels, cfg.batch_size, pad=True)
            if len(mels.track_ids):
                writer.write_table(_part_table(mels.track_ids, probs, embs, schema), row_group_size=PART_ROW_GROUP)
            skipped += mels.skipped
            hits += mels.cache_hits
            rows += len(mels.track_ids)
        seconds = time.perf_counter() - start
        stored = {"format": PART_FORMAT, "key": st.key, "partition": k, "partitions": j.n,
                  "tagger": f"cnn-{meta['loss']}", "n_contexts": m, "embedding_dim": d, "tracks": rows,
                  "skipped": skipped, "mel_cache_hits": hits, "memo": st.memo, "model_sha256": j.model_sha,
                  "device": str(j.device()), "batch_size": cfg.batch_size, "seconds": round(seconds, 3),
                  "computed_at": pd.Timestamp.now(tz="UTC").isoformat()}
        writer.add_key_value_metadata({META: json.dumps(stored)})
    return {**result, "reused": False, "tracks": rows, "skipped": len(skipped), "mel_cache_hits": hits,
            "seconds": round(seconds, 3)}


class _PartStream:
    """A part's rows, one row group in memory at a time, with their current catalogue positions."""

    def __init__(self, path: Path, position: pd.Index, m: int, d: int):
        self.path, self.position, self.m, self.d = path, position, m, d
        self.md = pq.read_metadata(path)
        self.group, self.at, self.last = 0, 0, -1
        self.pos = np.zeros(0, np.int64)

    def _load(self) -> None:
        table = pq.ParquetFile(self.path, metadata=self.md).read_row_group(self.group)
        self.group += 1
        self.ids = table.column("track_id").to_numpy(zero_copy_only=False).astype(object)
        self.pos = self.position.get_indexer(self.ids)
        if (self.pos < 0).any() or (np.diff(self.pos) <= 0).any() or (len(self.pos) and self.pos[0] <= self.last):
            raise PartitionsNotReady(f"{self.path}: rows not in the catalogue's order; rerun its partition")
        self.last = int(self.pos[-1]) if len(self.pos) else self.last
        self.probs = table.column("context_probs").combine_chunks().flatten().to_numpy().reshape(-1, self.m)
        self.embs = table.column("audio_embedding").combine_chunks().flatten().to_numpy().reshape(-1, self.d)
        self.at = 0

    def take_below(self, limit: int) -> list[tuple]:
        """The rows with a catalogue position below ``limit`` not taken yet: (pos, ids, probs, embs)."""
        out = []
        while True:
            if self.at == len(self.pos):
                if self.group == self.md.num_row_groups:
                    return out
                self._load()
                continue
            end = int(np.searchsorted(self.pos, limit, side="left"))
            if end > self.at:
                s = slice(self.at, end)
                out.append((self.pos[s], self.ids[s], self.probs[s], self.embs[s]))
                self.at = end
            if self.at < len(self.pos):
                return out


def combine(params: Params, results: list[dict] | None = None, n: int | None = None, *,
            config: BatchConfig | None = None, in_job: Job | None = None, out: Path | None = None) -> dict:
    """Every current part -> ``out`` (default paths.track_features_parquet, then with its report),
    in catalogue order, the job's label in the "tagger" column.

    Refuses (PartitionsNotReady) while a partition is missing or out of date. ``results``: the
    run_partition results of this run (the DAG's mapped tasks), for the report's work figures.
    Parts left by another N are removed once the file is written."""
    j = in_job or job(params, n, config)
    states = [j.state(k) for k in range(j.n)]
    stale = [s.k for s in states if not s.current]
    if stale:
        raise PartitionsNotReady(f"{j.parts}: partition(s) {stale} of {j.n} missing or out of date; "
                                 f"run them first (run_partition)")
    report = params.paths.report("track_features") if out is None else out.with_suffix(".json")
    out = out or params.paths.track_features_parquet
    # the combined file is named by its parts' keys (and label): combining the same parts again (a
    # DAG rerun) changes nothing, so DVC and the online store see no new file
    combined = hashlib.sha256("|".join([j.label, *(s.key for s in states)]).encode()).hexdigest()
    if out.exists() and report.exists() and _combined_key(out) == combined:
        # the file's own key, not the report's (a kill between the two writes leaves an older report)
        return {**json.loads(report.read_text()), "reused": True, "combined": combined, "model_sha256": j.model_sha}
    first = states[0].meta
    tagger, m, d = j.label, first["n_contexts"], first["embedding_dim"]
    timestamp = pd.Timestamp.now(tz="UTC").floor("s")
    schema = pa.Table.from_pandas(inference.track_frame(["x"], np.zeros((1, m)), np.zeros((1, d)), tagger, timestamp),
                                  preserve_index=False).schema
    schema = schema.with_metadata({**(schema.metadata or {}), COMBINED: combined.encode()})
    position = pd.Index(j.track_ids)
    streams = [_PartStream(s.path, position, m, d) for s in states]
    rows, prob_sum = 0, 0.0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for lo in range(0, len(j.track_ids), COMBINE_CHUNK):
            pieces = [piece for stream in streams for piece in stream.take_below(lo + COMBINE_CHUNK)]
            if not pieces:
                continue
            pos = np.concatenate([q[0] for q in pieces])
            order = np.argsort(pos, kind="stable")
            probs = np.concatenate([q[2] for q in pieces])[order]
            frame = inference.track_frame(np.concatenate([q[1] for q in pieces])[order].tolist(), probs,
                                          np.concatenate([q[3] for q in pieces])[order], tagger, timestamp)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            rows += len(frame)
            prob_sum += float(probs.sum(dtype=np.float64))
    expected = sum(s.meta["tracks"] for s in states)
    if rows != expected:                     # a part changed under us between the check and the read
        raise PartitionsNotReady(f"{out}: {rows} rows combined, the parts list {expected}; rerun")
    for other in j.parts.glob("part-*-of-*.parquet"):
        if not other.name.endswith(f"-of-{j.n}.parquet"):
            other.unlink(missing_ok=True)
    computed = [r for r in results or [] if not r.get("reused")]
    stats = {"tracks": rows, "skipped": sum(len(s.meta["skipped"]) for s in states),
             "mel_cache_hits": sum(r["mel_cache_hits"] for r in computed) if results is not None else None,
             "tagger": tagger, "embedding_dim": d, "combined": combined, "model_sha256": j.model_sha,
             "mean_context_probability": prob_sum / (rows * m) if rows else None,
             "partitions": j.n,
             "partitions_computed": len(computed) if results is not None else None,
             "partitions_reused": len(results) - len(computed) if results is not None else None}
    write_json(stats, report)
    return stats


def _combined_key(path: Path) -> str | None:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return meta.get(COMBINED, b"").decode() or None


def run_all(params: Params, config: BatchConfig | None = None) -> dict:
    """Every partition, then combine, in this process (what `ctxtag track-features` does)."""
    j = job(params, config=config)
    results = [run_partition(params, k, in_job=j)
               for k in progress(range(j.n), total=j.n, description="track-feature partitions")]
    return combine(params, results, in_job=j)
