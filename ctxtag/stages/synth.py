"""`ctxtag synth`: write the generated world to paths.raw."""

from __future__ import annotations

import shutil

from ctxtag.config import Params
from ctxtag.world.synth import generate


def run(params: Params, audio: bool = True) -> dict:
    out = params.paths.raw
    if out.exists():
        shutil.rmtree(out)                     # a stage output: regenerate it whole
    world = generate(params.synth, params.contexts, params.seed, out, audio=audio)
    return {"tracks": len(world.tracks), "playlists": len(world.playlists), "events": len(world.events)}
