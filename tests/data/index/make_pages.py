"""Regenerates the recorded PyTorch-index pages in this folder from the build table.

Inputs:
- ``fomm_doctor/install/torch_builds.json``: which build tags (cpu, cu126, rocm6.4, xpu, ...) each torch
  minor series published per platform, and which CPython versions have wheels.
- ``pypi_torch.json`` (this folder): the real PyPI listing of torch (PEP 691 JSON, copied unchanged from a
  recording); it supplies the patch versions (2.14.0, 2.14.1, ...) of each minor series.

Output: one ``pytorch_<tag>.html`` per build tag that has at least one torch >= 2.0 file, shaped like
download.pytorch.org's static PEP 503 pages (absolute links on the second host download-r2.pytorch.org,
``#sha256=`` fragments, ``%2B`` for the ``+`` of the local version label). Files are written only for the
(version, tag, platform, python) combinations the table says were published; a row's optional
``patch_only`` entries restrict a tag to some patch versions (e.g. cu129 for 2.12.1 only). Pages of tags
the table no longer lists are deleted.

Simplifications, so that tests do not read more into the pages than is there:
- The sha256 fragments are NOT the real ones (those are not available here): each is the sha256 of the
  file name itself.
- Only CPython versions of the table's ``python`` list get files (the real index also has free-threaded
  cp313t/cp314t wheels and, for some releases, extra Linux-only versions such as cp315 for 2.13).
- macOS wheels (on the real cpu page, without a local label) are left out.
- Platform tags: Linux x86_64 ``linux_x86_64`` before 2.7 and ``manylinux_2_28_x86_64`` from 2.7 (the move
  to manylinux_2_28 came with 2.7); Linux aarch64 uses PyPI's tag of that release
  (``manylinux_2_17_aarch64.manylinux2014_aarch64`` before 2.6, ``manylinux_2_28_aarch64`` from 2.6);
  Windows ``win_amd64``; Windows on ARM64 ``win_arm64`` (CPU only, from 2.7; the PyTorch index is the one
  that has them, PyPI has none), for the Pythons of the row's ``platform_python`` (cp312 only: the wheels
  seen in published listings and install logs, cited in each row's source). CPU files on Linux aarch64 carry no ``+cpu`` label before 2.6 (they were the
  PyPI files) and ``+cpu`` from 2.6 on (label start not verified against the live index).

Run: ``python tests/data/index/make_pages.py`` (idempotent; the pages are committed).
"""
import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TABLE = ROOT / "fomm_doctor" / "install" / "torch_builds.json"
PYPI = HERE / "pypi_torch.json"
HOST = "https://download-r2.pytorch.org/whl"
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "windows-arm64")


def vkey(version):
    return tuple(int(x) for x in version.split("."))


def sha(name):
    return hashlib.sha256(name.encode()).hexdigest()


def patch_versions():
    """Minor series -> its final patch versions listed on PyPI (no pre-releases)."""
    data = json.loads(PYPI.read_text())
    found = {}
    for f in data["files"]:
        m = re.match(r"torch-(\d+)\.(\d+)\.(\d+)-", f["filename"])
        if m:
            found.setdefault(f"{m[1]}.{m[2]}", set()).add(f"{m[1]}.{m[2]}.{m[3]}")
    return {k: sorted(v, key=vkey) for k, v in found.items()}


def platform_tag(version, platform):
    v = vkey(version)
    if platform == "linux-x86_64":
        return "manylinux_2_28_x86_64" if v >= (2, 7) else "linux_x86_64"
    if platform == "linux-aarch64":
        return "manylinux_2_28_aarch64" if v >= (2, 6) else "manylinux_2_17_aarch64.manylinux2014_aarch64"
    return "win_arm64" if platform == "windows-arm64" else "win_amd64"


def local_label(version, tag, platform):
    if tag == "cpu" and platform == "linux-aarch64" and vkey(version) < (2, 6):
        return ""
    return "+" + tag


def allowed(row, tag, platform, version):
    for rule in row.get("patch_only", []):
        if rule["build"] == tag and platform in rule["platforms"]:
            return version in rule["versions"]
    return True


def files_by_tag(table, patches):
    pages = {}
    for row in table["releases"]:
        minor = row["torch"]
        if vkey(minor) < (2, 0):
            for platform in PLATFORMS:
                for tag in row["builds"].get(platform, []):
                    pages.setdefault(tag, {"rows": set(), "files": []})
            continue
        for platform in PLATFORMS:
            for tag in row["builds"].get(platform, []):
                page = pages.setdefault(tag, {"rows": set(), "files": []})
                for version in patches.get(minor, []):
                    if not allowed(row, tag, platform, version):
                        continue
                    for py in row.get("platform_python", {}).get(platform, row["python"]):
                        cp = "cp" + py.replace(".", "")
                        name = f"torch-{version}{local_label(version, tag, platform)}-{cp}-{cp}-{platform_tag(version, platform)}.whl"
                        page["files"].append((vkey(version), name))
                        page["rows"].add(minor)
    return pages


def render(tag, page):
    rows = ", ".join(sorted(page["rows"], key=vkey))
    links = []
    for _, name in sorted(set(page["files"])):
        href = name.replace("+", "%2B")
        links.append(f'<a href="{HOST}/{tag}/{href}#sha256={sha(name)}">{name}</a><br/>')
    return (f"<!-- generated by tests/data/index/make_pages.py from fomm_doctor/install/torch_builds.json, "
            f"build '{tag}', release rows {rows}; sha256 fragments are sha256(file name), not the real hashes -->\n"
            "<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>\n    " + "\n    ".join(links) + "\n  </body>\n</html>\n")


def main():
    table = json.loads(TABLE.read_text())
    pages = files_by_tag(table, patch_versions())
    written = {}
    for tag, page in sorted(pages.items()):
        if not page["files"]:
            continue  # tag only published for torch < 2.0: no page
        path = HERE / f"pytorch_{tag}.html"
        path.write_text(render(tag, page))
        written[path.name] = len(set(page["files"]))
    for old in HERE.glob("pytorch_*.html"):
        if old.name not in written:
            old.unlink()
    for name, count in sorted(written.items()):
        print(f"{name}: {count} files")


if __name__ == "__main__":
    main()
