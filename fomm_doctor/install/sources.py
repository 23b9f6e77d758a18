"""Which indexes to read for torch and for the rest: `--mirror tsinghua|official|auto|<name>|URL`, plus pip's
own configuration (index-url, extra-index-url, find-links), which always comes first: it is the user's choice,
and on some machines (an offline one with a local wheel folder) the only source that holds the CPU build.

Know what a mirror carries: PyPI mirrors (Tsinghua, USTC, Aliyun, ...) never carry the PyTorch wheel index,
so a `+cpu` Linux build or a CUDA build on Windows comes from the PyTorch index or a mirror of it.
"""
from dataclasses import dataclass, replace
from typing import Callable, Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import UserError
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.pip_config import PYPI_SIMPLE
from fomm_doctor.net.redact import redact

PYTORCH_INDEX = "https://download.pytorch.org/whl/"


def check_url(option: str, value: str) -> str:
    """A location given on the command line: an http(s) or file:// URL with a readable host and port, or a
    path. Returns it unchanged; raises one sentence at once (no retries) for anything else."""
    shown = redact(value)
    if any(ord(c) < 32 or c == "\x7f" for c in value) or not value.strip():
        raise UserError(f"{option} {shown!r} is not a URL: it is empty or holds control characters.")
    if "://" not in value:
        return value  # a path: whether it exists is for the reader to say
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number between 0 and 65535
    except ValueError as exc:
        raise UserError(f"{option} {shown} is not a valid URL ({redact(str(exc))}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise UserError(f"{option} {shown} must be an http://, https:// or file:// URL, or a folder.")
    if scheme != "file" and not parts.hostname:
        raise UserError(f"{option} {shown} has no host name.")
    return value


def is_local(url: str) -> bool:
    """A file:// URL or a path: the user's own files, not a server."""
    return url.startswith("file:") or "://" not in url


def same_index(a: Optional[str], b: Optional[str]) -> bool:
    """Two index URLs name the same index (case of scheme/host and a trailing slash do not matter)."""
    if not a or not b:
        return False

    def key(u):
        try:
            parts = urlsplit(u)
            return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower(), parts.path.rstrip("/")
        except ValueError:
            return u
    return key(a) == key(b)


def official_indexes(pypi: Optional[str], pytorch: Optional[str]) -> dict:
    """The indexes whose sha256 a mirror's file is compared with: PyPI for plain torch wheels, the PyTorch index
    for builds with a local label (+cpu, +cu126, ...). None for a default; "none" turns a comparison off."""
    def pick(value, default):
        if value is None:
            return default
        return None if value.strip().lower() == "none" else _slash(value if "://" in value else "file://" + value)
    return {"pypi": pick(pypi, _slash(PYPI_SIMPLE)), "pytorch": pick(pytorch, PYTORCH_INDEX)}


def official_page_base(official: dict, version: str) -> Optional[str]:
    """The official index to compare a file of torch `version` with: `<pytorch>/<label>/` for a labelled build,
    PyPI for a plain one; None when that comparison is turned off."""
    if "+" in version:
        return official["pytorch"] + version.split("+", 1)[1] + "/" if official.get("pytorch") else None
    return official.get("pypi")


def is_official(source_url: str, official: dict) -> bool:
    """A source that is itself one of the official indexes (or one of the PyTorch index's build pages)."""
    if same_index(source_url, official.get("pypi")):
        return True
    pt = official.get("pytorch")
    if not pt:
        return False
    parent = source_url.rstrip("/").rsplit("/", 1)[0]
    return same_index(parent, pt)


@dataclass(frozen=True)
class Source:
    name: str  # "pip config", "tsinghua", "pytorch", "URL"
    kind: str  # "index" (PEP 503/691) | "find-links" (folder or flat page)
    url: str
    role: str  # "pip" | "pypi" | "pytorch"


@dataclass(frozen=True)
class PytorchIndex:
    """The PyTorch wheel index, or a mirror of it: one page per build at <url>/<build>/."""
    name: str
    url: str
    flat: bool = False  # the build pages are flat listings of files (pip's find-links), not simple indexes


@dataclass(frozen=True)
class Mirror:
    """Where the packages come from: `name` is "pip" (pip's own index), "auto", "URL" or a known mirror's name."""
    name: str
    pypi: Optional[str]  # the PyPI index (or mirror) for plain wheels and everything else
    pytorch: Optional[PytorchIndex]  # None: the PyPI index is all there is (--mirror URL)
    pypi_name: Optional[str] = None  # --mirror auto: the known PyPI mirror it took, None when none answered


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _pip_index(pip_cfg: dict) -> str:
    """The index pip itself uses: its configured index-url, else PyPI."""
    return pip_cfg.get("index_url") or _slash(PYPI_SIMPLE)


def pytorch_index_url(index: PytorchIndex, backend: Backend) -> str:
    """The per-backend page of a PyTorch wheel index (or its mirror): <base>/<backend>/."""
    return _slash(index.url) + str(backend) + "/"


def _pytorch_index(name: str, entry: dict) -> PytorchIndex:
    """A PyTorch-index mirror of wheels_index.json."""
    return PytorchIndex(name, entry["url"], entry["kind"] == "pytorch-flat")


def resolve_mirror(choice: Optional[str], idx: dict, pip_cfg: dict, probe: Callable, timeout: float = 3.0) -> Mirror:
    """None: pip's own index for PyPI packages and the official PyTorch index. 'auto': `probe` the known
    mirrors concurrently and take the fastest PyPI mirror and the fastest PyTorch-index mirror that answer."""
    mirrors = idx["mirrors"]
    official_pt = _pytorch_index("pytorch", mirrors["pytorch"])
    if choice in (None, "", "pip"):
        return Mirror("pip", _pip_index(pip_cfg), official_pt)
    if choice == "auto":
        return _fastest_mirrors(mirrors, pip_cfg, probe, timeout, official_pt)
    if choice in mirrors:
        m = mirrors[choice]
        if m["kind"] == "pypi":
            return Mirror(choice, m["url"], official_pt)
        return Mirror(choice, _slash(PYPI_SIMPLE), _pytorch_index(choice, m))
    if "://" in choice or choice.startswith("/"):
        check_url("--mirror", choice)
        url = choice if "://" in choice else "file://" + choice
        return Mirror("URL", _slash(url), None)
    names = ", ".join(sorted(mirrors))
    raise UserError(f"--mirror {choice} is not a mirror we know; use one of {names}, auto, or the URL of a "
                    f"simple index.")


def _fastest_mirrors(mirrors: dict, pip_cfg: dict, probe: Callable, timeout: float,
                     official_pt: PytorchIndex) -> Mirror:
    """`--mirror auto`: the fastest answering PyPI mirror and PyTorch-index mirror (pip's index and the official
    PyTorch index where none answers)."""
    # a tiny page on each mirror (the index root may be megabytes on PyPI mirrors)
    urls = {n: (_slash(m["url"]) + "pip/" if m["kind"] == "pypi" else m["url"]) for n, m in mirrors.items()}
    measured = probe(urls, timeout)
    answering = [n for n, r in measured.items() if r.get("ok") or r.get("status") == 404]

    def fastest(kinds):
        cands = [n for n in answering if mirrors[n]["kind"] in kinds]
        return min(cands, key=lambda n: measured[n].get("latency_ms") or 1e9) if cands else None
    pypi = fastest(("pypi",))
    pt = fastest(("pytorch", "pytorch-flat"))
    return Mirror("auto", mirrors[pypi]["url"] if pypi else _pip_index(pip_cfg),
                  _pytorch_index(pt, mirrors[pt]) if pt else official_pt, pypi)


def torch_sources(mirror: Mirror, backends: list, pip_cfg: dict) -> list:
    """Where to look for the torch wheel, in preference order: pip's own find-links and index, then one
    PyTorch-index page per build worth reading (all are read; the best file wins, ties go to the earlier)."""
    out = []
    for loc in pip_cfg.get("find_links") or []:
        out.append(Source("pip find-links", "find-links", loc, "pip"))
    if mirror.name == "URL":
        out.append(Source("URL", "index", mirror.pypi, "pypi"))
    elif mirror.name != "pip" and mirror.pypi:
        out.append(Source(mirror.pypi_name or mirror.name, "index", mirror.pypi, "pypi"))
    else:
        out.append(Source("pip index-url", "index", mirror.pypi, "pip"))
    if mirror.name != "URL":
        for url in pip_cfg.get("extra_index_urls") or []:
            out.append(Source("pip extra-index-url", "index", url, "pip"))
    pt = mirror.pytorch
    for backend in backends if pt else []:
        out.append(Source(pt.name, "find-links" if pt.flat else "index", pytorch_index_url(pt, backend), "pytorch"))
    return out


def with_pytorch_index(mirror: Mirror, url: Optional[str]) -> Mirror:
    """`--pytorch-index URL`: any mirror of the PyTorch wheel index (`<URL>/<build>/torch/`)."""
    if not url:
        return mirror
    if "://" not in url and not url.startswith("/"):
        raise UserError(f"--pytorch-index must be a URL such as https://mirror.example/whl/, not {redact(url)!r}.")
    check_url("--pytorch-index", url)
    return replace(mirror, pytorch=PytorchIndex("URL", url if "://" in url else "file://" + url))


@dataclass(frozen=True)
class DependencyIndex:
    """pip's index options for everything but the torch wheel."""
    index_url: str
    extra_index_urls: tuple = ()
    find_links: tuple = ()


def dependency_indexes(mirror: Mirror, pip_cfg: dict) -> DependencyIndex:
    """pip options for torch's dependencies and the project's other packages: the chosen PyPI index, keeping
    pip's configured extra indexes and find-links (a machine may depend on them)."""
    return DependencyIndex(mirror.pypi or _pip_index(pip_cfg), tuple(pip_cfg.get("extra_index_urls") or ()),
                           tuple(pip_cfg.get("find_links") or ()))
