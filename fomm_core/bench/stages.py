"""The per-stage timings of a bench row: which stages each family reports, which of an engine's calls each one
times, and the wrapper that adds a call's time to its stage.

FOMM and TPSMM: keypoints (the driving frames' detector), dense motion, and the generator as the rest of
`animate`. LivePortrait: keypoints (M, on the source and every driving frame, as both the original pipeline and
ours read the source's keypoints per run), warp (W) and generator (G), each timed around its own calls; F (once
per source) and the stitching MLP are in no stage.
"""
from __future__ import annotations

import time

STAGES = {"fomm": ("keypoints", "dense motion", "generator"),
          "tpsmm": ("keypoints", "dense motion", "generator"),
          "liveportrait": ("keypoints", "warp", "generator")}
# our engines' calls each stage times (attribute -> stage); a family's stage not named here is the rest of animate
ENGINE_CALLS = {"fomm": {"_keypoints": "keypoints", "_dense_motion": "dense motion"},
                "tpsmm": {"_keypoints": "keypoints", "_dense_motion": "dense motion"},
                "liveportrait": {"_torch_keypoints": "keypoints", "_run_warp": "warp", "_run_generator": "generator"}}
# the original LivePortrait wrapper's networks each stage times
REFERENCE_LIVEPORTRAIT_CALLS = {"motion_extractor": "keypoints", "warping_module": "warp",
                                "spade_generator": "generator"}


def timed(fn, timings: dict, stage: str):
    """fn, adding each call's seconds to timings[stage]."""
    def call(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[stage] += time.perf_counter() - t
        return out
    return call


def time_calls(owner, calls: dict, timings: dict) -> list:
    """Replace owner's attributes named in calls ({attribute: stage}) by timed ones; -> the stages timed (an
    attribute the owner lacks is left out: its stage is not reported)."""
    found = [name for name in calls if hasattr(owner, name)]
    for name in found:
        setattr(owner, name, timed(getattr(owner, name), timings, calls[name]))
    return [calls[name] for name in found]
