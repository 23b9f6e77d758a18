"""Which indexes to read for torch and for the rest: `--mirror tsinghua|official|auto|<name>|URL`, plus pip's
own configuration (index-url, extra-index-url, find-links), which always comes first: it is the user's choice,
and on some machines (this one) the only source that holds the CPU build.

Know what a mirror carries: PyPI mirrors (Tsinghua, USTC, Aliyun, ...) never carry the PyTorch wheel index,
so a `+cpu` Linux build or a CUDA build on Windows comes from the PyTorch index or a mirror of it.
"""
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import UserError
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


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _pip_index(pip_cfg: dict) -> str:
    """The index pip itself uses: its configured index-url, else PyPI."""
    return pip_cfg.get("index_url") or _slash(PYPI_SIMPLE)


def pytorch_index_url(mirror: dict, backend: str) -> str:
    """The per-backend page of a PyTorch wheel index (or its mirror): <base>/<backend>/."""
    return _slash(mirror["url"]) + backend + "/"


def resolve_mirror(choice: Optional[str], idx: dict, pip_cfg: dict, probe: Optional[Callable] = None,
                   timeout: float = 3.0) -> dict:
    """-> {"name", "pypi": url or None, "pytorch": mirror entry or None, "measured": {...}}.

    None: pip's own index for PyPI packages and the official PyTorch index. 'auto': probe the known mirrors
    concurrently and take the fastest PyPI mirror and the fastest PyTorch-index mirror that answer.
    """
    mirrors = idx["mirrors"]
    official_pt = dict(mirrors["pytorch"], name="pytorch")
    if choice in (None, "", "pip"):
        return {"name": "pip", "pypi": _pip_index(pip_cfg), "pytorch": official_pt, "measured": {}}
    if choice == "auto":
        return _fastest_mirrors(mirrors, pip_cfg, probe or _default_probe, timeout, official_pt)
    if choice in mirrors:
        m = mirrors[choice]
        if m["kind"] == "pypi":
            return {"name": choice, "pypi": m["url"], "pytorch": official_pt, "measured": {}}
        return {"name": choice, "pypi": _slash(PYPI_SIMPLE), "pytorch": dict(m, name=choice), "measured": {}}
    if "://" in choice or choice.startswith("/"):
        check_url("--mirror", choice)
        url = choice if "://" in choice else "file://" + choice
        return {"name": "URL", "pypi": _slash(url), "pytorch": None, "measured": {}}
    names = ", ".join(sorted(mirrors))
    raise UserError(f"--mirror {choice} is not a mirror we know; use one of {names}, auto, or the URL of a "
                    f"simple index.")


def _fastest_mirrors(mirrors: dict, pip_cfg: dict, probe: Callable, timeout: float, official_pt: dict) -> dict:
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
    return {"name": "auto", "pypi": mirrors[pypi]["url"] if pypi else _pip_index(pip_cfg),
            "pypi_name": pypi, "pytorch": dict(mirrors[pt], name=pt) if pt else official_pt, "measured": measured}


def _default_probe(urls: dict, timeout: float) -> dict:
    from fomm_doctor.checks.mirrors import probe_mirrors
    return probe_mirrors(urls, timeout)


def torch_sources(mirror: dict, backends: list, py: dict, pip_cfg: dict) -> list:
    """Where to look for the torch wheel, in preference order: pip's own find-links and index, then one
    PyTorch-index page per build worth reading (all are read; the best file wins, ties go to the earlier)."""
    out = []
    for loc in pip_cfg.get("find_links") or []:
        out.append(Source("pip find-links", "find-links", loc, "pip"))
    if mirror["name"] == "URL":
        out.append(Source("URL", "index", mirror["pypi"], "pypi"))
    elif mirror["name"] != "pip" and mirror.get("pypi"):
        out.append(Source(mirror.get("pypi_name") or mirror["name"], "index", mirror["pypi"], "pypi"))
    else:
        out.append(Source("pip index-url", "index", mirror["pypi"], "pip"))
    if mirror["name"] != "URL":
        for url in pip_cfg.get("extra_index_urls") or []:
            out.append(Source("pip extra-index-url", "index", url, "pip"))
    pt = mirror.get("pytorch")
    for backend in backends if pt else []:
        kind = "find-links" if pt.get("kind") == "pytorch-flat" else "index"
        out.append(Source(pt.get("name", "pytorch"), kind, pytorch_index_url(pt, backend), "pytorch"))
    return out


def with_pytorch_index(mirror: dict, url: Optional[str]) -> dict:
    """`--pytorch-index URL`: any mirror of the PyTorch wheel index (`<URL>/<build>/torch/`)."""
    if not url:
        return mirror
    if "://" not in url and not url.startswith("/"):
        raise UserError(f"--pytorch-index must be a URL such as https://mirror.example/whl/, not {redact(url)!r}.")
    check_url("--pytorch-index", url)
    return dict(mirror, pytorch={"kind": "pytorch", "url": url if "://" in url else "file://" + url, "name": "URL"})


def dependency_indexes(mirror: dict, pip_cfg: dict) -> dict:
    """pip options for torch's dependencies and the project's other packages: the chosen PyPI index, keeping
    pip's configured extra indexes and find-links (a machine may depend on them)."""
    return {"index_url": mirror.get("pypi") or _pip_index(pip_cfg),
            "extra_index_urls": list(pip_cfg.get("extra_index_urls") or []),
            "find_links": list(pip_cfg.get("find_links") or [])}
