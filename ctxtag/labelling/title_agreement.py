"""Agreement of the title matcher with the authors' own keyword matches.

The reference file holds one keyword per title from the authors' list of 96 context keywords,
so agreement is measured on rows whose reference keyword is one of our contexts: there it must
be among the contexts the matcher finds.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ctxtag.common.quarantine import InputError
from ctxtag.labelling.matcher import match_many


def agreement(path: Path, contexts: Sequence[str]) -> dict:
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    missing = [c for c in ("title", "matches") if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}")
    found = match_many(frame["title"], contexts)
    ref_is_ctx = frame["matches"].isin(contexts)
    agree = pd.Series([m in f for m, f in zip(frame["matches"], found, strict=True)], index=frame.index)
    compared = frame[ref_is_ctx]
    disagree = compared[~agree[ref_is_ctx]]
    # titles whose reference is another keyword (love, training, ...) but that name a context too
    extra = frame[~ref_is_ctx & pd.Series([bool(f) for f in found], index=frame.index)]
    return {
        "titles": len(frame),
        "compared": len(compared),
        "agree": int(agree[ref_is_ctx].sum()),
        "agreement": float(agree[ref_is_ctx].mean()) if len(compared) else 1.0,
        "disagreements": [
            {"row": int(i) + 2, "title": t, "reference": m, "found": sorted(found[i])}
            for i, t, m in zip(disagree.index, disagree["title"], disagree["matches"], strict=True)
        ],
        "other_keyword_rows_with_a_context": len(extra),
    }
