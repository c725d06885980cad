"""Catalogue-scale batch tagging (ctxtag.tagger.batch): deterministic partitions that cover the
catalogue once, parts skipped when current and redone when their checkpoint or audio changed, a
kill -9 mid-part that leaves no broken part, and a combined file equal to the single-process one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml

from ctxtag.audio.mel_cache import extract
from ctxtag.config import load_params
from ctxtag.tagger import batch
from ctxtag.tagger.batch import (
    BatchConfig,
    PartitionsNotReady,
    combine,
    plan_partitions,
    run_all,
    run_partition,
)
from ctxtag.tagger.inference import infer, model_meta, track_frame
from ctxtag.tagger.model import ChoiCNN
from ctxtag.vocabulary import CONTEXTS

ROOT = Path(__file__).resolve().parents[2]
N_TRACKS = 14
CFG = BatchConfig(partitions=3, batch_size=16, chunk_tracks=2)        # several chunks per partition
PARAMS = {"audio": {"n_mels": 16, "duration_s": 0.75, "offset_s": 0.0},   # 16 x 17 mels: a cheap CNN
          "train": {"loss": "none", "device": "cpu"}}


def _clip(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(22050)).astype(np.float32), 22050)


def save_checkpoint(project: Path, seed: int) -> Path:
    params = load_params(project / "params.yaml")
    torch.manual_seed(seed)
    cnn = ChoiCNN(16, 17, len(CONTEXTS), dropout=0.3)
    with torch.no_grad():                       # eval-mode BatchNorm with statistics of its own
        cnn.input_bn.running_mean.fill_(0.3)
        cnn.input_bn.running_var.fill_(1.7)
    path = params.paths.checkpoint("none")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": cnn.state_dict(), "meta": model_meta(CONTEXTS, params.audio, 0.3, "none")}, path)
    return path


def make_world(project: Path, n_tracks: int = N_TRACKS) -> Path:
    """A catalogue of ``n_tracks`` 1 s clips (plus one corrupt and one missing file) and a tagger
    checkpoint, under ``project`` (params.yaml's default relative paths)."""
    audio = project / "data/raw/audio"
    audio.mkdir(parents=True)
    rows = []
    for i in range(n_tracks):
        _clip(audio / f"{i:03d}.wav", i)
        rows.append({"track_id": f"t{i:03d}", "audio_path": f"audio/{i:03d}.wav"})
    (audio / "corrupt.wav").write_bytes(b"RIFF not really")
    rows += [{"track_id": "corrupt", "audio_path": "audio/corrupt.wav"},
             {"track_id": "missing", "audio_path": "audio/missing.wav"}]
    pd.DataFrame(rows).to_csv(project / "data/raw/tracks.csv", index=False)
    (project / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    save_checkpoint(project, seed=0)
    return project


@pytest.fixture
def project(tmp_path, monkeypatch):
    from ctxtag.common import io

    monkeypatch.chdir(tmp_path)
    # atomic_path sweeps a folder's dead temps once per process, by its (relative) name: each test's
    # project is a new folder under the same name, as a new process would see it
    monkeypatch.setattr(io, "_SWEPT", set())
    return make_world(tmp_path)


def _params(project: Path):
    return load_params(project / "params.yaml")


def single_process(params) -> pd.DataFrame:
    """The single-process computation: every mel of the catalogue at once, one infer over them all
    (as `ctxtag track-features` did before partitioning), with the same batch size."""
    from ctxtag.common.io import audio_paths
    from ctxtag.tagger.inference import load_cnn

    model, meta = load_cnn(params.paths.checkpoint("none"))
    audio_of = audio_paths(params.paths.tracks)
    mels = extract(audio_of.index.tolist(), [params.paths.audio_root / a for a in audio_of], params.audio,
                   params.paths.mel_cache)
    probs, embs = infer(model, mels.mels, CFG.batch_size, pad=True)
    return track_frame(mels.track_ids, probs, embs, f"cnn-{meta['loss']}",
                       pd.Timestamp.now(tz="UTC").floor("s"))   # as the stage stamped it


def _combined(params) -> pd.DataFrame:
    return pd.read_parquet(params.paths.track_features_parquet)


def _assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same tracks in the same order with bit-identical values (the timestamp aside)."""
    assert got["track_id"].tolist() == want["track_id"].tolist()
    assert (got["tagger"] == want["tagger"]).all()
    for column in ("context_probs", "audio_embedding"):
        np.testing.assert_array_equal(np.stack(got[column]), np.stack(want[column]), err_msg=column)


def _stamps(params, n: int = CFG.partitions) -> dict[int, tuple[int, int]]:
    """(inode, mtime_ns) of each part: a rewritten part (atomic rename) gets a new inode."""
    out = {}
    for k in range(n):
        st = batch.part_path(params, k, n).stat()
        out[k] = (st.st_ino, st.st_mtime_ns)
    return out


def _partition_of_track(params, track_id: str) -> int:
    return int(batch.partition_of([track_id], CFG.partitions)[0])


# --- partitions ------------------------------------------------------------------------------------
@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_partitions_are_deterministic_and_cover_every_track_exactly_once(project):
    params = _params(project)
    ids = pd.read_csv(params.paths.tracks, dtype=str)["track_id"].tolist()
    code = ("import sys; from ctxtag.tagger.batch import partition_of; "
            "print(list(partition_of(sys.argv[1:], 7)))")
    runs = {subprocess.run([sys.executable, "-c", code, *ids], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert runs == {f"{list(batch.partition_of(ids, 7))}\n"}          # no hash() seed in it
    for n in (1, 3, 7):
        job = batch.job(params, n=n)
        members = [job.state(k).track_ids for k in range(n)]
        flat = [t for m in members for t in m]
        assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))       # each track once
        for m in members:                                                       # in catalogue order
            assert m == [t for t in ids if t in set(m)]
    assert plan_partitions(params, config=CFG) == [0, 1, 2]
    # a new track lands in one partition; every other track stays where it was
    grown = batch.partition_of([*ids, "t999"], 3)
    np.testing.assert_array_equal(grown[:-1], batch.partition_of(ids, 3))


# --- combine = single process ----------------------------------------------------------------------
def test_combined_output_equals_the_single_process_output_for_any_partitioning(project):
    params = _params(project)
    stats = run_all(params, config=CFG)
    want = single_process(params)
    got = _combined(params)
    _assert_same_rows(got, want)
    assert len(got) == N_TRACKS and stats["tracks"] == N_TRACKS and stats["skipped"] == 2
    assert stats["partitions"] == 3 and stats["partitions_computed"] == 3 and stats["partitions_reused"] == 0
    assert stats["mean_context_probability"] == pytest.approx(float(np.stack(want["context_probs"]).mean()), abs=1e-6)
    # the same parquet schema (and pandas dtypes) as the single-frame writer's
    reference = project / "reference.parquet"
    want.to_parquet(reference, index=False)
    assert pq.read_schema(params.paths.track_features_parquet).remove_metadata().equals(
        pq.read_schema(reference).remove_metadata())
    assert got.dtypes.equals(pd.read_parquet(reference).dtypes)
    # one partition, or seven of them, with other chunking: bit for bit the same rows
    for config in (BatchConfig(partitions=1, batch_size=16, chunk_tracks=100),
                   BatchConfig(partitions=7, batch_size=16, chunk_tracks=3)):
        run_all(params, config=config)
        _assert_same_rows(_combined(params), want)
    assert sorted(p.name for p in batch.parts_dir(params).iterdir()) == \
        [f"part-{k}-of-7.parquet" for k in range(7)]                     # other N's parts removed


def test_combine_streams_in_chunks_and_keeps_catalogue_order(project, monkeypatch):
    monkeypatch.setattr(batch, "COMBINE_CHUNK", 3)     # many chunks, each merging from every part
    monkeypatch.setattr(batch, "PART_ROW_GROUP", 2)    # and parts read two rows at a time
    params = _params(project)
    run_all(params, config=CFG)
    assert pq.ParquetFile(params.paths.track_features_parquet).metadata.num_row_groups >= 4
    assert pq.ParquetFile(batch.part_path(params, 0, 3)).metadata.num_row_groups >= 2
    _assert_same_rows(_combined(params), single_process(params))


# --- idempotence -----------------------------------------------------------------------------------
def test_rerun_skips_every_current_partition_without_writing(project):
    params = _params(project)
    run_all(params, config=CFG)
    before, combined = _stamps(params), _combined(params)
    out = params.paths.track_features_parquet
    report = params.paths.report("track_features").read_bytes()
    written = out.stat().st_mtime_ns
    for f in (project / "data/raw/audio").glob("*.wav"):          # touched: new mtime, same bytes
        os.utime(f, ns=(time.time_ns(), time.time_ns()))
    stats = run_all(params, config=CFG)
    assert stats["reused"] is True
    assert _stamps(params) == before                                  # no part rewritten
    # nor the combined file and its report: DVC and the online store see nothing new
    assert out.stat().st_mtime_ns == written and params.paths.report("track_features").read_bytes() == report
    _assert_same_rows(_combined(params), combined)
    assert plan_partitions(params, stale_only=True, config=CFG) == []


def test_changed_audio_redoes_only_its_partition(project):
    params = _params(project)
    run_all(params, config=CFG)
    before, old = _stamps(params), _combined(params).set_index("track_id")
    changed = "t005"
    k = _partition_of_track(params, changed)
    _clip(project / "data/raw/audio/005.wav", seed=99)                 # new content
    assert plan_partitions(params, stale_only=True, config=CFG) == [k]
    stats = run_all(params, config=CFG)
    after = _stamps(params)
    assert stats["partitions_computed"] == 1
    assert after[k] != before[k] and {i: s for i, s in after.items() if i != k} == \
        {i: s for i, s in before.items() if i != k}
    new = _combined(params).set_index("track_id")
    assert not np.array_equal(new.loc[changed, "audio_embedding"], old.loc[changed, "audio_embedding"])
    _assert_same_rows(new.reset_index(), single_process(params))


def test_a_missing_file_that_appears_redoes_its_partition(project):
    params = _params(project)
    run_all(params, config=CFG)
    k = _partition_of_track(params, "missing")
    meta = batch.read_part_meta(batch.part_path(params, k, 3))
    assert {s["track_id"]: s["reason"] for s in meta["skipped"]}.get("missing") == "file not found"
    _clip(project / "data/raw/audio/missing.wav", seed=7)
    stats = run_all(params, config=CFG)
    assert stats["partitions_computed"] == 1 and stats["tracks"] == N_TRACKS + 1
    assert "missing" in set(_combined(params)["track_id"])


def test_changed_checkpoint_redoes_every_partition(project):
    params = _params(project)
    run_all(params, config=CFG)
    before, old = _stamps(params), _combined(params)
    save_checkpoint(project, seed=1)
    stats = run_all(params, config=CFG)
    after = _stamps(params)
    assert stats["partitions_computed"] == 3 and all(after[k] != before[k] for k in range(3))
    assert not np.array_equal(np.stack(_combined(params)["audio_embedding"]), np.stack(old["audio_embedding"]))


def test_combine_refuses_while_a_partition_is_missing_or_stale(project):
    params = _params(project)
    for k in (0, 2):
        run_partition(params, k, config=CFG)
    with pytest.raises(PartitionsNotReady, match=r"\[1\] of 3"):
        combine(params, config=CFG)
    assert not params.paths.track_features_parquet.exists()
    run_partition(params, 1, config=CFG)
    save_checkpoint(project, seed=2)                                  # every part now out of date
    with pytest.raises(PartitionsNotReady, match=r"\[0, 1, 2\] of 3"):
        combine(params, config=CFG)


def test_an_unreadable_part_is_redone(project, capsys):
    params = _params(project)
    run_all(params, config=CFG)
    want = _combined(params)
    batch.part_path(params, 1, 3).write_bytes(b"PAR1 damaged on disk")
    redone = [batch.run_partition(params, k, config=CFG) for k in range(3)]
    assert [r["reused"] for r in redone] == [True, False, True] and "unreadable part" in capsys.readouterr().err
    assert pd.read_parquet(batch.part_path(params, 1, 3)).shape[0] > 0
    stats = batch.combine(params, redone, config=CFG)
    assert stats["reused"] is True          # the redone part holds what the damaged one held: same key
    _assert_same_rows(_combined(params), want)


# --- kill -9 -----------------------------------------------------------------------------------------
KILLED = """
import time
import pyarrow.parquet as pq
from ctxtag.config import load_params
from ctxtag.tagger import batch
params, cfg = load_params("params.yaml"), batch.BatchConfig(partitions=3, batch_size=16, chunk_tracks=2)
batch.run_partition(params, 0, config=cfg)
write = pq.ParquetWriter.write_table
def write_then_hang(self, *args, **kwargs):
    write(self, *args, **kwargs)
    print("writing", flush=True)           # partition 1's first chunk is in its temp file
    time.sleep(120)
pq.ParquetWriter.write_table = write_then_hang
batch.run_partition(params, 1, config=cfg)
"""


def test_kill_9_mid_part_leaves_no_broken_part_and_the_rerun_finishes_it(project):
    params = _params(project)
    proc = subprocess.Popen([sys.executable, "-c", KILLED], cwd=project, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert "writing" in (line.strip() for line in proc.stdout)        # progress bars before it
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    parts = batch.parts_dir(params)
    assert (parts / "part-0-of-3.parquet").exists() and not (parts / "part-1-of-3.parquet").exists()
    assert [p.name for p in parts.glob(".part-1-of-3.parquet.*.tmp")]     # killed mid-write, not before
    finished = batch.part_path(params, 0, 3).stat()
    stats = run_all(params, config=CFG)
    assert stats["partitions_reused"] == 1 and stats["partitions_computed"] == 2
    again = batch.part_path(params, 0, 3).stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)   # kept as it was
    assert sorted(p.name for p in parts.iterdir()) == [f"part-{k}-of-3.parquet" for k in range(3)]  # temp swept
    _assert_same_rows(_combined(params), single_process(params))


# --- memo --------------------------------------------------------------------------------------------
def test_fingerprints_hash_only_files_whose_stat_changed(tmp_path, monkeypatch):
    files = [tmp_path / f"{i}.bin" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))                 # long ago: not racy
    shas, memo = batch.fingerprints([*files, tmp_path / "gone.bin"], {})
    assert shas[-1] == "missing" and shas[0] == batch.file_sha256(files[0])
    hashed = []
    monkeypatch.setattr(batch, "file_sha256", lambda p: hashed.append(p.name) or "new")
    assert batch.fingerprints(files, memo)[0] == shas[:3] and hashed == []            # stats only
    files[1].write_bytes(b"x" * 100)                                    # same size, new mtime
    assert batch.fingerprints(files, memo)[0] == [shas[0], "new", shas[2]] and hashed == ["1.bin"]
    # a file modified just now is hashed again next time (same size, same mtime tick, other bytes)
    hashed.clear()
    _, racy = batch.fingerprints(files, {})
    assert racy[str(files[1])][1] is None and racy[str(files[0])][1] == 1_000_000_000
    batch.fingerprints(files, racy)
    assert hashed == ["0.bin", "1.bin", "2.bin", "1.bin"]


# --- a track's floats do not depend on where it falls in a batch -----------------------------------
def test_probabilities_do_not_depend_on_the_position_in_the_batch():
    """ATen's vectorised sigmoid computes a tensor's tail with the scalar function (last-bit
    differences); inference.sigmoid keeps every element on one path, wherever its row falls."""
    from ctxtag.tagger.inference import sigmoid

    logits = torch.from_numpy(np.random.default_rng(0).normal(0, 3, (40, 15)).astype(np.float32))
    whole = sigmoid(logits)          # (torch.sigmoid fails this for 6 of the 39 starts on AVX2)
    for start in range(1, 40):
        assert torch.equal(sigmoid(logits[start:]), whole[start:])
    torch.testing.assert_close(whole, torch.sigmoid(logits), rtol=0, atol=1e-7)


def test_padded_inference_is_the_same_however_the_mels_are_split():
    torch.manual_seed(0)
    model = ChoiCNN(16, 17, 15).eval()
    mels = np.random.default_rng(0).normal(1, 1, (23, 16, 17)).astype(np.float16)
    probs, embs = infer(model, mels, 16, pad=True)
    assert probs.shape == (23, 15) and embs.shape == (23, 256)
    for cuts in ([0, 5, 23], [0, 1, 2, 11, 23]):
        pieces = [infer(model, mels[a:b], 16, pad=True) for a, b in zip(cuts, cuts[1:], strict=False)]
        np.testing.assert_array_equal(np.concatenate([p for p, _ in pieces]), probs)
        np.testing.assert_array_equal(np.concatenate([e for _, e in pieces]), embs)


def test_a_champions_job_links_the_pipelines_parts_and_keeps_them_through_a_retrain(project, tmp_path):
    """The same checkpoint bytes under another path (a registry's copy): its job has a folder of its
    own, seeded by hard links to the pipeline's current parts (nothing recomputed), labelled as
    asked; a retrain that rewrites the pipeline's parts leaves the champion's as they were."""
    import shutil

    params = _params(project)
    run_all(params, config=CFG)
    copy = tmp_path / "champion.pt"
    shutil.copy(params.paths.checkpoint("none"), copy)
    pipeline = batch.job(params, config=CFG)
    champion = batch.job(params, config=CFG, checkpoint=copy, label="reg-model/7")
    assert champion.parts != pipeline.parts
    assert batch.seed(champion, pipeline) == CFG.partitions
    results = [run_partition(params, k, in_job=champion) for k in range(CFG.partitions)]
    assert all(r["reused"] for r in results)
    for k in range(CFG.partitions):                       # the same files, linked
        assert champion.state(k).path.stat().st_ino == pipeline.state(k).path.stat().st_ino
    out = tmp_path / "served.parquet"
    stats = combine(params, results, in_job=champion, out=out)
    served = pd.read_parquet(out)
    assert set(served["tagger"]) == {"reg-model/7"} and stats["model_sha256"] == champion.model_sha
    _assert_same_rows(served.assign(tagger=f"cnn-{params.train.loss}"),
                      _combined(params).assign(tagger=f"cnn-{params.train.loss}"))
    inodes = {k: champion.state(k).path.stat().st_ino for k in range(CFG.partitions)}
    save_checkpoint(project, seed=1)                      # a retrain: other weights, the pipeline redoes its parts
    run_all(params, config=CFG)
    assert {k: champion.state(k).path.stat().st_ino for k in range(CFG.partitions)} == inodes
    assert all(champion.state(k).current for k in range(CFG.partitions))
