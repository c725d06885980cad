"""`ctxtag validate`: the Great Expectations gates (playlists, listening logs, labels, track
features) -> reports/quality.json; bad rows quarantined, data docs in paths.data_docs."""

from __future__ import annotations

import dataclasses

from ctxtag.common.io import write_json
from ctxtag.config import Params
from ctxtag.platform.gates import validate_all


def run(params: Params) -> dict:
    reports = {k: dataclasses.asdict(r) for k, r in validate_all(params).items()}
    write_json(reports, params.paths.report("quality"))
    return reports
