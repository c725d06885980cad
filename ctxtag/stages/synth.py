"""`ctxtag synth`: write the generated world to paths.raw."""

from __future__ import annotations

from ctxtag.common.io import atomic_dir
from ctxtag.config import Params
from ctxtag.world.synth import generate


def run(params: Params, audio: bool = True) -> dict:
    # a stage output, regenerated whole: built beside paths.raw and swapped in, so a killed run
    # never leaves half a world for the next stage to read (events are written chunk by chunk
    # into the staging folder too)
    with atomic_dir(params.paths.raw) as staging:
        world = generate(params.synth, params.contexts, params.seed, staging, audio=audio)
    return {"tracks": len(world.tracks), "playlists": len(world.playlists), "events": world.n_events}
