"""An animator for a loaded model of any family: mode and precision checked once, the path settled (measured on
this machine for `fast`, built for `int8`), then the family's engine built at that path.

    model = load_model("vox.pth.tar")                       # fomm_core.model.checkpoint
    animator = make_animator(model, precision="fast")       # cpu, relative motion, the model's frame size
    animator.precision, animator.path, animator.note, animator.choice_table, animator.FAMILY

A family is one row of FAMILIES: its engine class, how that engine is built from the model's networks, the
networks whose weights key the caches, and its int8 build where it has one. A new family is its engine module
plus its row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from fomm_core.device import choose_precision, resolve_device
from fomm_core.errors import FommError
from fomm_core.inference.choice import Choice, settle
from fomm_core.inference.fomm import Animator, exact_engine
from fomm_core.inference.int8 import load_or_build, weights_fingerprint
from fomm_core.inference.int8.fomm import FOMM_INT8
from fomm_core.inference.int8.tpsmm import TPSMM_INT8
from fomm_core.inference.liveportrait import LivePortraitAnimator
from fomm_core.inference.tpsmm import TpsAnimator


@dataclass(frozen=True)
class Family:
    """How make_animator runs one model family."""
    engine: type                      # the engine class: FAMILY, MODES, check_mode, PRECISIONS
    build: Callable                   # (networks, **options) -> an engine (options: the engine's own)
    weights: tuple                    # the networks whose weights key the caches (int8 models, measured tables)
    measured: dict                    # engine options of the CPU engines `fast` is measured with
    int8: Optional[Callable] = None   # (networks, size, **how) -> its int8 runner (Int8Refused: why not); None: none


def _fomm(networks, **options) -> Animator:
    return Animator(networks["generator"], networks["kp_detector"], **options)


def _fomm_int8(networks, size, **how):
    generator, kp_detector = networks["generator"], networks["kp_detector"]
    return load_or_build(FOMM_INT8, {"generator": generator, "kp_detector": kp_detector}, size,
                         make_exact=lambda: exact_engine(generator, kp_detector), **how)


def _tpsmm_int8(networks, size, **how):
    # checked against the float32 engine on the unfused networks the graphs are exported from
    return load_or_build(TPSMM_INT8, networks, size,
                         make_exact=lambda: TpsAnimator(networks, device="cpu", precision="fp32", fuse=False), **how)


# model.family -> how it runs (fomm_core.model.checkpoint.Model.family)
FAMILIES = {
    "fomm": Family(Animator, _fomm, weights=("generator", "kp_detector"), measured={}, int8=_fomm_int8),
    "tpsmm": Family(TpsAnimator, TpsAnimator, weights=("kp_detector", "dense_motion_network", "inpainting_network"),
                    measured={"mode": "absolute"}, int8=_tpsmm_int8),
    "liveportrait": Family(LivePortraitAnimator, LivePortraitAnimator,
                           weights=("appearance_feature_extractor", "motion_extractor", "warping_module",
                                    "spade_generator", "stitching_retargeting_module"), measured={}),
}


def family_of(model) -> Family:
    found = FAMILIES.get(model.family)
    if found is None:
        names = [f.engine.FAMILY for f in FAMILIES.values()]
        raise FommError(f"no engine animates {model.family} models; this library runs "
                        f"{', '.join(names[:-1])} and {names[-1]} checkpoints.")
    return found


def make_animator(model, *, device="cpu", precision="auto", mode="relative", size=None, on_step=None,
                  adapt_movement_scale=None, batch=4, **engine_options):
    """The family's engine for `model` (fomm_core.model.checkpoint.Model), its path settled first.

    device: auto, cpu, cuda, cuda:N or mps. precision: auto, fast (measured on this CPU), fp32, bf16, fp16 or
    int8 (fomm_core.device.choose_precision). size: the frame side fast and int8 are settled for (default: the
    model's). batch: the frames each animate call will get (`fast` is measured so: 1 for the webcam). on_step(done,
    total, what) follows the one-time int8 build and measurement. adapt_movement_scale
    None keeps each family's demo default (off for FOMM, on for TPSMM and LivePortrait). engine_options: the
    engine's own (fuse, channels_last, compile; FOMM's use_relative_jacobian).
    """
    family = family_of(model)
    options = dict(engine_options, mode=family.engine.check_mode(mode, model.networks))
    if adapt_movement_scale is not None:
        options["adapt_movement_scale"] = adapt_movement_scale
    options["device"] = resolve_device(device)
    choice = Choice(choose_precision(options["device"], precision))
    if choice.precision in ("fast", "int8"):
        choice = settle_path(family, model.networks, choice.precision, int(size or model.size), on_step, batch)
    if choice.runner is not None:
        options["int8_runner"] = choice.runner
    engine = family.build(model.networks, precision=choice.precision, **options)
    engine.note, engine.choice_table = choice.note, choice.table
    return engine


def settle_path(family: Family, networks: dict, requested: str, size: int, on_step=None, batch: int = 4) -> Choice:
    """What runs for `fast` or `int8` on this CPU at this frame size and batch: measured (and cached) on first use."""
    import torch
    threads = torch.get_num_threads()
    fingerprint = weights_fingerprint(*(networks[name] for name in family.weights))  # once: it keys both caches
    runner = {}

    def int8():
        if "built" not in runner:  # measuring and then running int8 need it once
            runner["built"] = family.int8(networks, size, threads=threads, on_step=on_step, fingerprint=fingerprint)
        return runner["built"]

    def make(precision):
        extra = {"int8_runner": int8()} if precision == "int8" else {}
        return family.build(networks, device="cpu", precision=precision, **family.measured, **extra)
    with_int8 = [name for name, f in FAMILIES.items() if f.int8 is not None]
    refusal = (f"int8 is built for {' and '.join(FAMILIES[n].engine.FAMILY for n in with_int8)} models only; "
               f"a {family.engine.FAMILY} model runs in torch")
    return settle(requested, make, fingerprint, size, threads=threads, on_step=on_step, batch=max(1, int(batch)),
                  int8=int8 if family.int8 is not None else None, int8_refusal=refusal)
