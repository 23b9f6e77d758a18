"""The options several commands share, each spelled and explained once: a command chooses only its default."""
from typing import Optional

import typer

from fomm_doctor.animation import MODES_HELP

PRECISIONS_HELP = ("auto (= fast on the CPU, fp16 on CUDA), fast (the fastest path measured on this machine that "
                   "keeps quality), fp32 (exact), bf16, fp16, int8 (OpenVINO)")


def checkpoint(default_is: str = "the best face model present") -> Optional[str]:
    return typer.Option(None, "--checkpoint", help=f"Checkpoint name (e.g. vox) or path (default: {default_is}).")


def config() -> Optional[str]:
    return typer.Option(None, "--config", help="Config name (vox-256, tpsmm-vox-256, ...) or YAML path (default: "
                                               "the one the checkpoint fits).")


def device(default: str = "auto", why: str = "") -> str:
    """why: what this command's default is for, said after the choices."""
    return typer.Option(default, "--device", help="auto (CUDA when usable, then MPS, then the CPU), cpu, cuda, "
                                                  f"cuda:N or mps.{' ' + why if why else ''}")


def precision(default: str = "auto", why: str = "") -> str:
    return typer.Option(default, "--precision", help=f"{PRECISIONS_HELP}.{' ' + why if why else ''}")


def size() -> Optional[int]:
    return typer.Option(None, "--size", help="Frame side in pixels the model runs at (default: its config's frame "
                                             "size; 256 where the config names none, as the original demos do). "
                                             "LivePortrait always takes 256 and gives 512.")


def mode() -> str:
    return typer.Option("relative", "--mode", help=f"{MODES_HELP}.")
