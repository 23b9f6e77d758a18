"""The facts a torch choice depends on, typed: the target interpreter and the GPUs of the machine it runs on
(this machine's, probed; or another's, described by --platform, --python-version, --driver and --gpu-arch).

Probes and options report plain data; it becomes these values once, in `from_facts`, and nothing downstream
reads a fact by a string key.
"""
from dataclasses import dataclass, field, fields
from typing import Optional

from fomm_doctor.install import builds
from fomm_doctor.install.backend import CPU, Backend, Kind


def _known(cls, facts: dict) -> dict:
    """The entries of `facts` that are fields of `cls` (probes report more than a plan needs)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in facts.items() if k in names}


@dataclass(frozen=True)
class Interpreter:
    """The Python the wheel is for, as it reported itself (or as --platform/--python-version describe it)."""
    version: str  # "3.12.3"
    platform: str  # sys.platform: "linux", "win32", "darwin"
    machine: str  # platform.machine(): "x86_64", "AMD64", "arm64", ...
    tags: tuple = ()  # wheel tags it accepts, most preferred first
    bits: int = 64
    implementation: str = "cpython"
    executable: Optional[str] = None  # None: another machine's interpreter
    prefix: str = ""
    in_venv: Optional[bool] = None
    pip: Optional[str] = None  # pip's version there, None when it has none (or is another machine's)
    gil_disabled: bool = False
    glibc: Optional[str] = None
    macos: Optional[str] = None
    tags_source: Optional[str] = None  # "packaging" (its own), "computed" (here, from its facts) or "--platform"
    platform_tag: Optional[str] = None  # the --platform tag it was described by

    @classmethod
    def from_facts(cls, facts: dict) -> "Interpreter":
        known = _known(cls, facts)
        known["tags"] = tuple(known.get("tags") or ())
        known["machine"] = known.get("machine") or ""
        return cls(**known)

    @property
    def os(self) -> str:
        return builds.os_name(self.platform)

    @property
    def pkey(self) -> str:
        return builds.platform_key(self.platform, self.machine)

    @property
    def minor(self) -> str:
        """'3.12' of '3.12.3'."""
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class NvidiaGpu:
    name: Optional[str]
    compute_capability: Optional[str]  # "8.6"; None when the driver is too old to say


@dataclass(frozen=True)
class Nvidia:
    driver_version: Optional[str] = None
    gpus: tuple = ()  # NvidiaGpu
    wsl: bool = False  # nvidia-smi is WSL's: the driver is the Windows one

    @classmethod
    def from_facts(cls, facts: dict) -> "Nvidia":
        return cls(facts.get("driver_version"), tuple(NvidiaGpu(g.get("name"), g.get("compute_capability"))
                                                      for g in facts.get("gpus") or []), bool(facts.get("wsl")))


@dataclass(frozen=True)
class AmdGpu:
    name: Optional[str]
    gfx: Optional[str]  # "gfx1100"; None when it could not be read


@dataclass(frozen=True)
class IntelGpu:
    name: Optional[str]
    device_id: Optional[str] = None
    discrete: Optional[bool] = None  # Arc and Data Center GPUs: the ones torch's XPU build runs on


@dataclass(frozen=True)
class Gpus:
    nvidia: Nvidia = field(default_factory=Nvidia)
    amd: tuple = ()  # AmdGpu
    intel: tuple = ()  # IntelGpu

    @classmethod
    def from_facts(cls, nvidia: dict, amd: dict, intel: dict) -> "Gpus":
        """From the probes' reports: {"driver_version", "gpus", "wsl"}, and {"gpus": [...]} for AMD and Intel."""
        return cls(Nvidia.from_facts(nvidia or {}),
                   tuple(AmdGpu(**_known(AmdGpu, g)) for g in (amd or {}).get("gpus") or []),
                   tuple(IntelGpu(**_known(IntelGpu, g)) for g in (intel or {}).get("gpus") or []))


@dataclass(frozen=True)
class Machine:
    """The machine a plan is for."""
    py: Interpreter
    gpus: Gpus = field(default_factory=Gpus)

    @property
    def os(self) -> str:
        return self.py.os

    @property
    def pkey(self) -> str:
        return self.py.pkey

    @property
    def driver(self) -> Optional[str]:
        return self.gpus.nvidia.driver_version

    @property
    def driver_os(self) -> str:
        """Whose driver table applies: under WSL the GPU driver is the Windows one."""
        return "windows" if self.gpus.nvidia.wsl or self.os == "windows" else "linux"

    @property
    def nvidia_gpus(self) -> tuple:
        return self.gpus.nvidia.gpus

    @property
    def amd_gpus(self) -> tuple:
        return self.gpus.amd

    @property
    def xpu_gpus(self) -> tuple:
        return tuple(g for g in self.gpus.intel if g.discrete)

    @property
    def has_gpu(self) -> bool:
        return bool(self.driver or self.nvidia_gpus or self.amd_gpus or self.xpu_gpus)


@dataclass(frozen=True)
class InstalledTorch:
    """The torch a target interpreter has, as a fresh process of it reported it."""
    version: str  # torch.__version__: "2.14.1+cu126"
    cuda: Optional[str] = None  # torch.version.cuda: "12.6"; None for a CPU or ROCm build

    @classmethod
    def from_facts(cls, facts: dict) -> "InstalledTorch":
        return cls(str(facts["version"]), facts.get("cuda"))

    @property
    def backend(self) -> Backend:
        """Its build: the local label when it names one, else CUDA by torch.version.cuda, else CPU."""
        label = Backend.from_label(self.version.split("+", 1)[1]) if "+" in self.version else None
        if label:
            return label
        if not self.cuda:
            return CPU
        parts = builds.version_key(self.cuda)[:2]
        return Backend(Kind.CUDA, parts if len(parts) == 2 else ())
