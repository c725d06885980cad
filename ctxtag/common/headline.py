"""A stage's headline numbers for `dvc metrics show` / `dvc metrics diff` (reports/metrics/<stage>.json):
the few figures people compare between runs. The stage's full report stays a plain JSON output
beside it (reports/<stage>.json), for the summary, the README and anyone who wants the detail."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from numbers import Number

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


def write_report(report: Mapping, paths, name: str, headline: Sequence[str]) -> None:
    """A stage's full report to reports/<name>.json (a plain output) and its ``headline`` numbers
    (``pick`` patterns) to reports/metrics/<name>.json (what dvc.yaml declares as metrics)."""
    write_json(report, paths.report(name))
    write_json(pick(report, headline), paths.reports / "metrics" / f"{name}.json")
