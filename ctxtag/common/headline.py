"""A stage's headline numbers for `dvc metrics show` / `dvc metrics diff` (reports/metrics/<stage>.json):
the few figures people compare between runs. The stage's full report stays a plain JSON output
beside it (reports/<stage>.json), for the summary, the README and anyone who wants the detail."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from numbers import Number
from pathlib import Path

from ctxtag.common.io import write_json


def pick(report: Mapping, patterns: Sequence[str]) -> dict:
    """The numbers of ``report`` at the dotted ``patterns``, nested as in the report; each level of
    a pattern is an fnmatch pattern (``configs.*.observed.macro.roc_auc``). The last level keeps
    numbers only (not dicts, lists or None), so a broad pattern cannot pull in a whole table."""
    out: dict = {}
    for pattern in patterns:
        _walk(report, pattern.split("."), out)
    return out


def _walk(node: Mapping, levels: list[str], out: dict) -> None:
    head, rest = levels[0], levels[1:]
    for key, value in node.items():
        if not fnmatch.fnmatchcase(str(key), head):
            continue
        if rest:
            if isinstance(value, Mapping):
                sub: dict = out.get(key, {})
                _walk(value, rest, sub)
                if sub:
                    out[key] = sub
        elif isinstance(value, Number) and not isinstance(value, bool):
            out[key] = value


def write_headline(numbers: dict, reports: Path, stage: str) -> Path:
    path = Path(reports) / "metrics" / f"{stage}.json"
    write_json(numbers, path)
    return path
