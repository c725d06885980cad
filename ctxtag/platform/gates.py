"""Great Expectations 1.x gates for playlists, listening logs, labels and track features.

Each gate runs one expectation suite through a GX checkpoint (file-mode context under
``paths.data_docs``, which also renders the data docs: the readable report). Row-level failures
(an unknown device, a future timestamp, a duplicate event...) send those rows to the quarantine
with the expectation that failed as the reason; the gate fails when more than
``quality.max_bad_share`` of the rows are bad, or when a dataset-level expectation fails (label
balance, row count). A failed gate raises GateFailed, which stops `dvc repro` and the Airflow
run downstream of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.quarantine import Rejection, write_quarantine
from ctxtag.config import Params


class GateFailed(RuntimeError):
    """A suite failed beyond what quarantining rows can absorb; the message is the report."""


@dataclass
class GateReport:
    name: str
    rows: int
    passed: bool
    failed: list[str] = field(default_factory=list)          # "expectation(column): detail"
    bad_rows: int = 0
    data_docs: str = ""

    def text(self) -> str:
        head = f"gate {self.name}: {'passed' if self.passed else 'FAILED'} ({self.rows} rows, {self.bad_rows} bad)"
        return "\n".join([head, *(f"  - {f}" for f in self.failed), f"  data docs: {self.data_docs}"])


def _x(name: str, **kw):
    import great_expectations as gx

    return getattr(gx.expectations, name)(**kw)


# --- the suites: each returns (frame to validate, expectations); built from params ------------
def logs_suite(events: pd.DataFrame, params: Params, now: pd.Timestamp) -> tuple[pd.DataFrame, list]:
    lg = params.logs
    frame = events.assign(event_epoch_s=events["event_timestamp"].astype("int64") // 10**9)
    if "feedback" not in frame:                      # partitions written before feedback was logged
        frame["feedback"] = None
    latest = int((now + pd.Timedelta(seconds=lg.max_future_s)).timestamp())
    return frame, [
        *[_x("ExpectColumnValuesToNotBeNull", column=c) for c in ("user_id", "track_id", "event_timestamp")],
        _x("ExpectColumnValuesToBeInSet", column="device", value_set=list(lg.devices)),
        _x("ExpectColumnValuesToBeInSet", column="network", value_set=list(lg.networks)),
        _x("ExpectColumnValuesToBeInSet", column="context", value_set=list(params.contexts)),
        _x("ExpectColumnValuesToBeInSet", column="gender", value_set=list(lg.genders)),
        _x("ExpectColumnValuesToBeInSet", column="feedback", value_set=list(lg.feedback)),
        _x("ExpectColumnValuesToBeBetween", column="age", min_value=lg.min_age, max_value=lg.max_age),
        _x("ExpectColumnValuesToBeBetween", column="utc_offset_min", min_value=-14 * 60, max_value=14 * 60),
        _x("ExpectColumnValuesToBeBetween", column="event_epoch_s", max_value=latest),   # not in the future
        _x("ExpectCompoundColumnsToBeUnique", column_list=["user_id", "track_id", "event_timestamp"]),
        _x("ExpectTableRowCountToBeBetween", min_value=1),
    ]


def labels_suite(labels: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, list]:
    q = params.quality
    return labels, [
        _x("ExpectColumnValuesToNotBeNull", column="track_id"),
        _x("ExpectColumnValuesToBeUnique", column="track_id"),
        *[_x("ExpectColumnValuesToBeInSet", column=c, value_set=[0, 1]) for c in params.contexts],
        # label balance: no context absent or swamping the set
        *[_x("ExpectColumnMeanToBeBetween", column=c, min_value=q.min_label_share, max_value=q.max_label_share)
          for c in params.contexts],
        _x("ExpectTableRowCountToBeBetween", min_value=1),
    ]


def playlists_suite(playlists: pd.DataFrame, entries: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, list]:
    sizes = entries.groupby("playlist_id").size()
    frame = playlists.assign(n_tracks=playlists["playlist_id"].map(sizes).fillna(0).astype(int))
    return frame, [
        _x("ExpectColumnValuesToNotBeNull", column="playlist_id"),
        _x("ExpectColumnValuesToBeUnique", column="playlist_id"),
        _x("ExpectColumnValuesToNotBeNull", column="title"),
        _x("ExpectColumnValuesToBeBetween", column="n_tracks", min_value=1, max_value=params.quality.max_playlist_tracks),
        _x("ExpectTableRowCountToBeBetween", min_value=1),
    ]


def features_suite(tracks: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, list]:
    probs = np.stack(tracks["context_probs"].to_numpy()) if len(tracks) else np.zeros((0, len(params.contexts)))
    emb = np.stack(tracks["audio_embedding"].to_numpy()) if len(tracks) else np.zeros((0, 1))
    frame = tracks[["track_id"]].assign(prob_min=probs.min(axis=1, initial=0), prob_max=probs.max(axis=1, initial=0),
                                        n_probs=probs.shape[1],
                                        embedding_norm=np.where(np.isfinite(emb).all(1), np.linalg.norm(emb, axis=1),
                                                                np.nan))
    return frame, [
        _x("ExpectColumnValuesToBeUnique", column="track_id"),
        _x("ExpectColumnValuesToBeBetween", column="prob_min", min_value=0.0),
        _x("ExpectColumnValuesToBeBetween", column="prob_max", max_value=1.0),
        _x("ExpectColumnValuesToBeInSet", column="n_probs", value_set=[len(params.contexts)]),
        _x("ExpectColumnValuesToNotBeNull", column="embedding_norm"),               # NaN/inf in the embedding
        _x("ExpectTableRowCountToBeBetween", min_value=1),
    ]


# --- running a gate ------------------------------------------------------------------------------
def _context(root: Path):
    import great_expectations as gx

    root.mkdir(parents=True, exist_ok=True)
    return gx.get_context(mode="file", project_root_dir=str(root.resolve()))


def run_gate(name: str, frame: pd.DataFrame, expectations: list, params: Params, source: str) -> GateReport:
    """Validate ``frame``; quarantine failing rows (to quarantine/gate_<name>.jsonl, row = 1-based
    position in ``frame``, the record kept as read); raise GateFailed when the gate fails."""
    import great_expectations as gx

    ctx = _context(params.paths.data_docs)
    ds = ctx.data_sources.add_or_update_pandas("ctxtag")
    asset = next((a for a in ds.assets if a.name == name), None) or ds.add_dataframe_asset(name=name)
    batch = next((b for b in asset.batch_definitions if b.name == "whole"), None) \
        or asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    cp = ctx.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[vd], actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "COMPLETE"}))
    frame = frame.reset_index(drop=True)
    result = cp.run(batch_parameters={"dataframe": frame})

    failed, table_failed, reasons = [], False, {}
    for vr in result.run_results.values():
        for r in vr.results:
            if r.success:
                continue
            cfg = r.expectation_config
            col = cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list") or [])
            idx = r.result.get("unexpected_index_list")
            label = f"{cfg.type}({col})" if col else cfg.type
            if idx is None:                         # a dataset-level expectation: no row to blame
                table_failed = True
                failed.append(f"{label}: observed {r.result.get('observed_value')!r}")
                continue
            rows = [i if isinstance(i, int | np.integer) else i.get("index", i) for i in idx]
            failed.append(f"{label}: {len(rows)} row(s), e.g. rows {rows[:5]}")
            for i in rows:
                reasons.setdefault(int(i), []).append(label)
    import json

    rejections = [Rejection(source, i + 1, "; ".join(rs),
                            track_id=str(frame["track_id"].iat[i]) if "track_id" in frame else None,
                            raw=json.dumps(frame.iloc[i].astype(str).to_dict(), ensure_ascii=False))
                  for i, rs in sorted(reasons.items())]
    write_quarantine(rejections, params.paths.quarantine / f"gate_{name}.jsonl")
    bad_share = len(reasons) / max(len(frame), 1)
    docs = ctx.get_docs_sites_urls()[0]["site_url"] if ctx.get_docs_sites_urls() else ""
    report = GateReport(name, len(frame), not table_failed and bad_share <= params.quality.max_bad_share,
                        failed, len(reasons), docs)
    if not report.passed:
        raise GateFailed(report.text())
    return report


def validate_all(params: Params, now: pd.Timestamp | None = None) -> dict[str, GateReport]:
    """Every gate whose input exists (the pipeline may run part-way); raises on the first failure."""
    from ctxtag.common.io import known_track_ids
    from ctxtag.labelling.playlists import read_playlists
    from ctxtag.listening.lake import read_lake

    p, now = params.paths, now or pd.Timestamp.now(tz="UTC")
    reports: dict[str, GateReport] = {}
    start = time.perf_counter()
    if p.playlists.exists():
        table = read_playlists([p.playlists], known_track_ids(p.tracks))
        reports["playlists"] = run_gate("playlists", *playlists_suite(table.playlists, table.entries, params),
                                        params, str(p.playlists))
    if p.lake.exists():
        reports["listening_logs"] = run_gate("listening_logs", *logs_suite(read_lake(p.lake), params, now), params,
                                             str(p.lake))
    if (p.labelled / "labels.csv").exists():
        labels = pd.read_csv(p.labelled / "labels.csv", dtype={"track_id": str})
        reports["labels"] = run_gate("labels", *labels_suite(labels, params), params, str(p.labelled / "labels.csv"))
    if (p.track_features / "track_features.parquet").exists():
        tracks = pd.read_parquet(p.track_features / "track_features.parquet")
        reports["features"] = run_gate("features", *features_suite(tracks, params), params,
                                       str(p.track_features / "track_features.parquet"))
    print(f"quality gates: {len(reports)} passed in {time.perf_counter() - start:.1f} s")
    return reports
