"""What an install is asked to do (the command line, parsed and checked), and what it may ask of the machine
beyond the target interpreter: the probes, given to it by the caller.

install/ never imports the probes: `fomm-doctor install` builds a `Probes` from check's own (nvidia-smi,
rocminfo, the mirror latency test) and hands it in, so a test or another caller hands in others.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.install.backend import Backend
from fomm_doctor.install.machine import Gpus


@dataclass(frozen=True)
class InstallOptions:
    python: Optional[str] = None  # the target interpreter; None: the one running us
    backend: Optional[Backend] = None  # None: auto
    torch: Optional[str] = None
    mirror: Optional[str] = None
    only: Optional[tuple] = None  # package names; None = torch and the rest
    retries: int = 8
    timeout: float = 15.0
    connections: Optional[int] = None  # None: several byte ranges at once where the server allows it
    pytorch_index: Optional[str] = None
    platform: Optional[str] = None  # plan for another machine: pip platform tag, Python, driver, GPUs
    python_version: Optional[str] = None
    driver: Optional[str] = None
    gpu_arch: Optional[str] = None
    dry_run: bool = False
    cache_dir: Optional[Path] = None
    verify: bool = True
    allow_unverified: bool = False  # install a wheel from the network that has no published sha256
    official_pypi: Optional[str] = None  # index to compare a mirror's plain wheel with (None: pypi.org; "none": off)
    official_pytorch: Optional[str] = None  # the same for +cpu/+cuXXX builds (None: download.pytorch.org/whl)
    env: dict = field(default_factory=lambda: dict(os.environ))

    @property
    def other_machine(self) -> bool:
        """Planned for the machine --platform/--python-version describe, not this one."""
        return bool(self.platform or self.python_version)


@dataclass(frozen=True)
class Probes:
    """The questions an install asks of this machine, answered by whoever builds it."""
    gpus: Callable[[], Gpus]  # NVIDIA driver and GPUs, AMD GPUs, Intel GPUs
    mirrors: Callable[[dict, float], dict]  # {name: url}, timeout -> {name: {"ok", "latency_ms", "status", ...}}
