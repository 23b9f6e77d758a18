"""A torch build, as the index's local version label names it ("+cpu", "+cu126", "+rocm6.3", "+xpu"): parsed
once into a value that is compared, sorted and shown, never tested as a string again.

    Backend.parse("cu126")    -> Backend(Kind.CUDA, (12, 6)); str() gives "cu126" back
    Backend.parse("rocm6.2.4") -> Backend(Kind.ROCM, (6, 2, 4))

Apple silicon has no build of its own: the plain PyPI wheel (a CPU build by its label) uses the GPU through MPS.
"""
import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Kind(Enum):
    CPU = "cpu"
    CUDA = "cuda"
    ROCM = "rocm"
    XPU = "xpu"


# Kinds apart, in a fixed order, so that a machine with GPUs of two vendors gets one answer
_KIND_ORDER = {Kind.CPU: 0, Kind.XPU: 1, Kind.ROCM: 2, Kind.CUDA: 3}
_FAMILY = {Kind.CPU: "CPU", Kind.CUDA: "CUDA", Kind.ROCM: "ROCm", Kind.XPU: "XPU"}


@dataclass(frozen=True)
class Backend:
    kind: Kind
    # CUDA (12, 6) for cu126, ROCm (6, 2, 4) for rocm6.2.4; () for cpu and xpu, and for a CUDA build whose
    # version nothing pinned (a wheel whose metadata names CUDA packages without a version)
    version: tuple = ()

    @classmethod
    def parse(cls, label: str) -> "Backend":
        """'cpu', 'xpu', 'cuNNN', 'rocmX.Y[.Z]' (or 'cuda': some CUDA build) -> Backend; ValueError otherwise."""
        text = str(label).strip().lower()
        if text in ("cpu", "xpu"):
            return cls(Kind(text))
        if text == "cuda":
            return cls(Kind.CUDA)
        cuda = re.fullmatch(r"cu(\d+)(\d)", text)
        if cuda:
            return cls(Kind.CUDA, (int(cuda.group(1)), int(cuda.group(2))))
        rocm = re.fullmatch(r"rocm(\d+(?:\.\d+)+)", text)
        if rocm:
            return cls(Kind.ROCM, tuple(int(p) for p in rocm.group(1).split(".")))
        raise ValueError(f"{label!r} is not a torch build (cpu, cuNNN, rocmX.Y or xpu)")

    @classmethod
    def from_label(cls, label: str) -> Optional["Backend"]:
        """The build a local version label names, or None for a label that names none ('+git1a2b3c')."""
        try:
            return cls.parse(label)
        except ValueError:
            return None

    def __str__(self) -> str:
        if self.kind is Kind.CUDA:
            return f"cu{self.version[0]}{self.version[1]}" if self.version else "cuda"
        if self.kind is Kind.ROCM:
            return "rocm" + ".".join(map(str, self.version))
        return self.kind.value

    @property
    def is_gpu(self) -> bool:
        return self.kind is not Kind.CPU

    @property
    def family(self) -> str:
        """'CUDA', 'ROCm', 'XPU' or 'CPU', for sentences."""
        return _FAMILY[self.kind]

    @property
    def cuda(self) -> str:
        """'12.6' for cu126; '' for anything else (and for a CUDA build of unknown version)."""
        return ".".join(map(str, self.version)) if self.kind is Kind.CUDA else ""

    @property
    def words(self) -> str:
        """'CUDA 12.6' for a CUDA build of known version, else the label."""
        return f"CUDA {self.cuda}" if self.cuda else str(self)

    def same_cuda_major(self, other: "Backend") -> bool:
        """Both CUDA builds of one major version (cu130 and cu132): one set of driver and library rules."""
        return self.kind is other.kind is Kind.CUDA and bool(self.version) and self.version[:1] == other.version[:1]

    def sort_key(self) -> tuple:
        """Among builds of one release: a GPU build above CPU, a newer CUDA/ROCm above an older one."""
        return (_KIND_ORDER[self.kind],) + self.version


CPU = Backend(Kind.CPU)
