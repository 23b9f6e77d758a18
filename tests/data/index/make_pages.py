"""Writes the recorded index pages in this folder (run once; the pages are committed).

They mimic the real ones: PyPI's PEP 691 JSON with hashes, requires-python and a yanked file; the PyTorch
index's static PEP 503 HTML per backend with absolute links on a second host and #sha256= fragments; an
Aliyun-style flat directory listing; a 'mirror' whose links point back upstream.
"""
import hashlib
import html
import json
from pathlib import Path

HERE = Path(__file__).parent
PY = {"2.13.0": ["310", "311", "312", "313", "314"], "2.8.0": ["39", "310", "311", "312", "313"],
      "2.7.1": ["39", "310", "311", "312", "313"], "2.4.1": ["38", "39", "310", "311", "312"],
      "2.2.2": ["38", "39", "310", "311", "312"]}
CUDA = {"2.13.0": ["cu126", "cu128", "cu130"], "2.8.0": ["cu126", "cu128", "cu129"],
        "2.7.1": ["cu118", "cu126", "cu128"], "2.4.1": ["cu118", "cu121", "cu124"], "2.2.2": ["cu118", "cu121"]}
REQ = {"2.13.0": ">=3.10", "2.8.0": ">=3.9.0", "2.7.1": ">=3.9.0", "2.4.1": ">=3.8.0", "2.2.2": ">=3.8.0"}


def sha(name):
    return hashlib.sha256(name.encode()).hexdigest()


def pypi_files():
    files = [{"filename": "torch-0.1.2.tar.gz", "url": "https://files.pythonhosted.org/packages/torch-0.1.2.tar.gz",
              "hashes": {"sha256": sha("torch-0.1.2.tar.gz")}, "requires-python": None, "yanked": False}]
    for v, pys in PY.items():
        for p in pys:
            plats = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_11_0_arm64"]
            if v == "2.2.2":
                plats += ["macosx_10_9_x86_64"]
            abi = f"cp{p}" + ("t" if False else "")
            for plat in plats:
                name = f"torch-{v}-cp{p}-{abi}-{plat}.whl"
                files.append({"filename": name, "url": f"https://files.pythonhosted.org/packages/xx/{name}",
                              "hashes": {"sha256": sha(name)}, "requires-python": REQ[v], "yanked": False,
                              "size": 1000})
    # a yanked release that would otherwise win for Python 3.11 on Linux
    name = "torch-2.13.1-cp311-cp311-manylinux_2_28_x86_64.whl"
    files.append({"filename": name, "url": f"https://files.pythonhosted.org/packages/xx/{name}",
                  "hashes": {"sha256": sha(name)}, "requires-python": ">=3.10", "yanked": "broken metadata"})
    return {"meta": {"api-version": "1.1"}, "name": "torch", "files": files}


def pytorch_page(backend):
    links = []
    for v, pys in PY.items():
        if backend != "cpu" and backend not in CUDA[v]:
            continue
        for p in pys:
            plats = ["manylinux_2_28_x86_64", "win_amd64"]
            if backend == "cpu":
                plats += ["manylinux_2_28_aarch64"]
            for plat in plats:
                local = "" if (backend == "cpu" and "aarch64" in plat) else f"%2B{backend}"
                name = f"torch-{v}{local}-cp{p}-cp{p}-{plat}.whl"
                links.append(f'<a href="https://download-r2.pytorch.org/whl/{backend}/{name}#sha256={sha(name)}">'
                             f'{name.replace("%2B", "+")}</a><br/>')
    return "<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>\n    " + "\n    ".join(links) + \
        "\n  </body>\n</html>\n"


def main():
    (HERE / "pypi_torch.json").write_text(json.dumps(pypi_files(), indent=1))
    pypi = pypi_files()["files"]
    rows = []
    for f in pypi:
        rp = f' data-requires-python="{html.escape(f["requires-python"])}"' if f["requires-python"] else ""
        y = f' data-yanked="{html.escape(f["yanked"])}"' if f["yanked"] else ""
        rows.append(f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}"{rp}{y}>{f["filename"]}</a><br />')
    (HERE / "pypi_torch.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(rows) + "\n</body></html>\n")
    for b in ("cpu", "cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130"):
        (HERE / f"pytorch_{b}.html").write_text(pytorch_page(b))
    # Aliyun-style flat listing: relative links, no hashes, every package of the backend in one page
    names = ["torch-2.4.1%2Bcu121-cp311-cp311-linux_x86_64.whl", "torchvision-0.19.1%2Bcu121-cp311-cp311-linux_x86_64.whl",
             "torch-2.4.1%2Bcu121-cp311-cp311-win_amd64.whl"]
    (HERE / "aliyun_cu121_flat.html").write_text(
        "<html><head><title>Index of /pytorch-wheels/cu121/</title></head><body><h1>Index of /pytorch-wheels/cu121/</h1>"
        "<pre><a href=\"../\">../</a>\n" + "\n".join(f'<a href="{n}">{n.replace("%2B", "+")}</a>   16-Sep-2024 10:00   2.4G'
                                                  for n in names) + "</pre></body></html>\n")


if __name__ == "__main__":
    main()
