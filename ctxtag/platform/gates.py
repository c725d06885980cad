"""Great Expectations 1.x gates for playlists, listening logs, labels and track features.

Each gate runs one expectation suite through a GX checkpoint (file-mode context under
``paths.data_docs``, which also renders the data docs: the readable report). Row-level failures
(an unknown device, a future timestamp, a duplicate event...) send those rows to the quarantine
with the expectation that failed as the reason; the gate fails when more than
``quality.max_bad_share`` of the rows are bad, or when a dataset-level expectation fails (label
balance, row count, playlist distributions). A failed gate raises GateFailed, which stops
`dvc repro` and the Airflow run downstream of it.

The listening-log expectations are built from the rule table that ingestion and the API also
apply (ctxtag.listening.rules). The lake is validated a batch of whole UTC dates at a time
(``lake_gate``), so the gate holds a few million events in memory however large the lake; its
quarantine names each row's part file and row. The playlists gate checks only dataset-level properties: the
playlist reader already drops or quarantines bad rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctxtag.common.quarantine import Rejection, write_quarantine
from ctxtag.config import Params
from ctxtag.labelling.matcher import match_many
from ctxtag.listening.rules import KEY as LOG_KEY
from ctxtag.listening.rules import Rule, log_rules

TITLE_MEDIAN_CHARS = (2, 100)          # median playlist title length; the Deezer titles' is 8


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
def _log_expectation(rule: Rule, now: pd.Timestamp) -> list:
    """One rule of the listening-log table over the lake, where the timestamp is already parsed
    (event_timestamp in UTC, utc_offset_min) and categories are already lower-case."""
    col = "event_timestamp" if rule.column == "timestamp" else rule.column
    kw = {"notes": rule.reason}                       # the table's reason, shown in the data docs
    match rule.check:
        case "present":
            return [_x("ExpectColumnValuesToNotBeNull", column=col, **kw)]
        case "max_length":
            return [_x("ExpectColumnValueLengthsToBeBetween", column=col, max_value=int(rule.high), **kw)]
        case "has_offset":
            return [_x("ExpectColumnValuesToNotBeNull", column="utc_offset_min", **kw)]
        case "offset_range":
            return [_x("ExpectColumnValuesToBeBetween", column="utc_offset_min", min_value=rule.low,
                       max_value=rule.high, **kw)]
        case "not_future":
            latest = int((now + pd.Timedelta(seconds=rule.high)).timestamp())
            return [_x("ExpectColumnValuesToBeBetween", column="event_epoch_s", max_value=latest, **kw)]
        case "in_set":
            return [_x("ExpectColumnValuesToBeInSet", column=col, value_set=list(rule.allowed), **kw)]
        case "between":
            return [_x("ExpectColumnValuesToBeBetween", column=col, min_value=rule.low, max_value=rule.high, **kw)]
        case "unique":
            return [_x("ExpectCompoundColumnsToBeUnique", column_list=list(LOG_KEY), **kw)]
    # decodes, parses: the lake holds decoded text and parsed instants; in_catalogue: a check
    # against another dataset, done at ingestion where the catalogue is read anyway
    return []


def logs_suite(events: pd.DataFrame, params: Params, now: pd.Timestamp) -> tuple[pd.DataFrame, list]:
    """The listening-log rule table (ctxtag.listening.rules) as expectations, plus the row count."""
    return _logs_frame(events), _log_expectations(params, now)


def _log_expectations(params: Params, now: pd.Timestamp) -> list:
    table = log_rules(params.logs, params.contexts)
    return [*(x for rule in table for x in _log_expectation(rule, now)), _x("ExpectTableRowCountToBeBetween", min_value=1)]


def _logs_frame(events: pd.DataFrame) -> pd.DataFrame:
    # whole seconds since 1970 whatever the stored unit; NaT stays missing (and fails not-null)
    epoch_s = (events["event_timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    frame = events.assign(event_epoch_s=epoch_s)
    if "feedback" not in frame:                      # partitions written before feedback was logged
        frame["feedback"] = None
    return frame


# events the lake's gate holds in pandas at once (whole dates): ~1 GB with GX's working copies
LAKE_BATCH_ROWS = 2_000_000


def lake_gate(params: Params, now: pd.Timestamp, max_rows: int = LAKE_BATCH_ROWS) -> GateReport:
    """The listening-log gate over the lake, a batch of whole dates at a time (every copy of an
    event falls on its own date, so unique in each batch is unique in the lake), in bounded
    memory however large the lake; a quarantined row is named by its part file and row."""
    from ctxtag.listening.lake import date_batches, read_lake, read_parts

    lake = params.paths.lake
    batches = list(date_batches(lake, max_rows))            # paths only
    frames = (_logs_frame(read_parts(parts, where=True)) for parts in batches) if batches \
        else [_logs_frame(read_lake(lake))]                  # no events: the row count fails
    return run_gate_batches("listening_logs", frames, _log_expectations(params, now), params, str(lake))


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
    """Dataset-level only. The reader (ctxtag.labelling.playlists) already quarantines the rows
    without an id, a title or tracks and the duplicate ids; this checks what no single row shows."""
    sizes = entries.groupby("playlist_id").size()
    titles = playlists["title"].astype(str)
    frame = playlists[["playlist_id"]].assign(
        n_tracks=playlists["playlist_id"].map(sizes).fillna(0).astype(int),
        title_length=titles.str.strip().str.len(),
        has_context=[int(bool(found)) for found in match_many(titles, params.contexts)])
    lo, hi = TITLE_MEDIAN_CHARS
    return frame, [
        _x("ExpectTableRowCountToBeBetween", min_value=1),
        # no title naming a context means no labels downstream
        _x("ExpectColumnMeanToBeBetween", column="has_context", min_value=0.0, strict_min=True),
        # titles are short phrases; a median outside this means ids or descriptions in the title column
        _x("ExpectColumnMedianToBeBetween", column="title_length", min_value=lo, max_value=hi),
        # the reader takes playlists of any length: an oversized one is quarantined here, and the
        # gate fails only when more than quality.max_bad_share of them are (one bad row never stops a batch)
        _x("ExpectColumnValuesToBeBetween", column="n_tracks", max_value=params.quality.max_playlist_tracks),
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


def _docs_path(ctx, root: Path) -> str:
    """The data docs' index as a path under ``root`` (paths.data_docs as given: relative to the
    project when params.yaml says so), not GX's absolute file:// URL, so the report moves with the
    project."""
    from urllib.parse import unquote, urlparse

    sites = ctx.get_docs_sites_urls()
    if not sites:
        return ""
    url = urlparse(sites[0]["site_url"])
    if url.scheme != "file":
        return sites[0]["site_url"]                  # a hosted site (S3...): its URL is the address
    index = Path(unquote(url.path))
    try:
        return str(root / index.relative_to(root.resolve()))
    except ValueError:
        return str(index)


def run_gate(name: str, frame: pd.DataFrame, expectations: list, params: Params, source: str) -> GateReport:
    """Validate ``frame``; quarantine failing rows (to quarantine/gate_<name>.jsonl, row = 1-based
    position in ``frame``, the record kept as read); raise GateFailed when the gate fails."""
    return run_gate_batches(name, [frame], expectations, params, source)


def run_gate_batches(name: str, batches, expectations: list, params: Params, source: str) -> GateReport:
    """``run_gate`` over a dataset read a batch at a time (frames, in bounded memory): each batch
    runs the suite through the checkpoint, and the report, the quarantine and the bad-row share
    are the whole dataset's. A batch may name each row's file and row (columns ``_source`` and
    ``_row``, not validated); else rows are numbered through the batches, within ``source``. A
    row-level expectation holds on the whole when it holds on every batch, so batches must keep
    together what one expectation compares (the lake: whole dates); give at least one (an empty
    dataset: an empty frame, which fails the row count)."""
    import json

    import great_expectations as gx

    ctx = _context(params.paths.data_docs)
    ds = ctx.data_sources.add_or_update_pandas("ctxtag")
    asset = next((a for a in ds.assets if a.name == name), None) or ds.add_dataframe_asset(name=name)
    batch_def = next((b for b in asset.batch_definitions if b.name == "whole"), None) \
        or asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    cp = ctx.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[vd], actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "COMPLETE"}))

    table_failed, rows_seen = [], 0
    row_failed: dict[str, list] = {}                 # label -> [rows, first positions in their batch]
    rejections: list[Rejection] = []
    for frame in batches:
        frame = frame.reset_index(drop=True)
        where = frame.pop("_source").to_numpy() if "_source" in frame else None
        rows = frame.pop("_row").to_numpy() if "_row" in frame else None
        result = cp.run(batch_parameters={"dataframe": frame})
        reasons: dict[int, list[str]] = {}
        for vr in result.run_results.values():
            for r in vr.results:
                if r.success:
                    continue
                cfg = r.expectation_config
                col = cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list") or [])
                idx = r.result.get("unexpected_index_list")
                label = f"{cfg.type}({col})" if col else cfg.type
                if idx is None:                     # a dataset-level expectation: no row to blame
                    table_failed.append(f"{label}: observed {r.result.get('observed_value')!r}")
                    continue
                found = [i if isinstance(i, int | np.integer) else i.get("index", i) for i in idx]
                seen = row_failed.setdefault(label, [0, [i if where is None else f"{Path(where[i]).name}:{rows[i]}"
                                                         for i in found[:5]]])
                seen[0] += len(found)
                for i in found:
                    reasons.setdefault(int(i), []).append(label)
        for i, rs in sorted(reasons.items()):
            record = frame.iloc[i]
            rejections.append(Rejection(
                str(where[i]) if where is not None else source,
                int(rows[i]) if rows is not None else rows_seen + i + 1, "; ".join(rs),
                track_id=str(record["track_id"]) if "track_id" in frame else None,
                raw=json.dumps(record.astype(str).to_dict(), ensure_ascii=False)))
        rows_seen += len(frame)

    failed = [f"{label}: {n} row(s), e.g. rows {examples}" for label, (n, examples) in row_failed.items()]
    failed += list(dict.fromkeys(table_failed))      # once, however many batches failed it
    write_quarantine(rejections, params.paths.quarantined(f"gate_{name}"))
    bad_share = len(rejections) / max(rows_seen, 1)
    report = GateReport(name, rows_seen, not table_failed and bad_share <= params.quality.max_bad_share,
                        failed, len(rejections), _docs_path(ctx, params.paths.data_docs))
    if not report.passed:
        raise GateFailed(report.text())
    return report


def validate_all(params: Params, now: pd.Timestamp | None = None) -> dict[str, GateReport]:
    """Every gate whose input exists (the pipeline may run part-way); raises on the first failure."""
    from ctxtag.common.io import known_track_ids
    from ctxtag.labelling.playlists import read_playlists

    p, now = params.paths, now or pd.Timestamp.now(tz="UTC")
    reports: dict[str, GateReport] = {}
    start = time.perf_counter()
    if p.playlists.exists():
        table = read_playlists([p.playlists], known_track_ids(p.tracks))
        reports["playlists"] = run_gate("playlists", *playlists_suite(table.playlists, table.entries, params),
                                        params, str(p.playlists))
    if p.lake.exists():
        reports["listening_logs"] = lake_gate(params, now)
    if p.labels_csv.exists():
        labels = pd.read_csv(p.labels_csv, dtype={"track_id": str})
        reports["labels"] = run_gate("labels", *labels_suite(labels, params), params, str(p.labels_csv))
    if p.track_features_parquet.exists():
        tracks = pd.read_parquet(p.track_features_parquet)
        reports["features"] = run_gate("features", *features_suite(tracks, params), params,
                                       str(p.track_features_parquet))
    print(f"quality gates: {len(reports)} passed in {time.perf_counter() - start:.1f} s")
    return reports
