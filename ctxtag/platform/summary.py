"""`ctxtag summary`: the headline figures of the last `dvc repro`, for people."""

from __future__ import annotations

import json
from pathlib import Path

from ctxtag.common import timings
from ctxtag.config import Params


def print_summary(params: Params) -> dict:
    from rich.console import Console
    from rich.table import Table

    rep = params.paths.reports
    console = Console()
    tty = console.is_terminal
    if not tty:                     # a log or a pipe: no wrapping at 80 columns
        console = Console(width=200)
    labels = json.loads(params.paths.report("labels").read_text())
    table = Table(title="ctxtag: labelled dataset")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("playlists_valid", "rows_quarantined", "playlists_with_context_keyword",
                "dropped_too_many_tracks", "dropped_artist_dominated", "dropped_album_dominated",
                "playlists_kept", "tracks_labelled", "tracks_after_balancing", "labels_per_track"):
        value = labels[key]
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    for key, value in labels.get("vs_truth", {}).items():
        table.add_row(f"vs truth: {key}", f"{value:.3f}")
    split_path = params.paths.report("split")
    if split_path.exists():
        split = json.loads(split_path.read_text())
        for name, s in split["splits"].items():
            table.add_row(f"split {name}", f"{s['tracks']} ({s['share']:.1%})")
        table.add_row("artist / album overlap", f"{split['overlap'].get('artists')} / {split['overlap'].get('albums')}")
    console.print(table)
    from rich.markdown import Markdown

    for name in ("table2.md", "user_models.md"):
        if (rep / name).exists():
            text = (rep / name).read_text(encoding="utf-8")
            if tty:
                console.print(Markdown(text))
            else:                   # markdown tables read well as they are
                print(text, flush=True)
    steps = timings.latest(params.paths.timings)
    if steps:
        table = Table(title="time per step (the last run of each)")
        table.add_column("step")
        table.add_column("s", justify="right")
        table.add_column("share", justify="right")
        total = sum(r["seconds"] for r in steps.values())
        for name, r in steps.items():
            table.add_row(name, f"{r['seconds']:.1f}", f"{r['seconds'] / total:.0%}")
        table.add_row("all steps", f"{total:.1f}", "")
        console.print(table)
    plots = sorted(Path(rep / "plots").glob("*.png"))
    console.print("plots: " + ", ".join(str(p) for p in plots))
    return {"reports": str(rep), "plots": len(plots), "seconds": {k: r["seconds"] for k, r in steps.items()}}
