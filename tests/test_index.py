"""Reading indexes: PEP 691 JSON, PEP 503 HTML, flat listings, file:// indexes and folders, over real HTTP."""
from pathlib import Path

import pytest

from fomm_doctor.install.index import (IndexUnavailable, filename_project, parse_html_page, parse_json_page,
                                    read_find_links, read_project)
from httpfaults import FaultServer, Reply, Status

DATA = Path(__file__).parent / "data" / "index"


def test_json_and_html_pages_agree():
    """The real PyPI page of torch, recorded twice through pip's index here: PEP 691 JSON and PEP 503 HTML."""
    j = parse_json_page((DATA / "pypi_torch.json").read_text(), "https://pypi.org/simple/torch/")
    h = parse_html_page((DATA / "pypi_torch.html").read_text(), "https://pypi.org/simple/torch/")
    assert len(j) == len(h) > 900
    assert sorted((f.filename, f.url, f.sha256, f.requires_python, f.yanked) for f in j) == \
           sorted((f.filename, f.url, f.sha256, f.requires_python, f.yanked) for f in h)
    # data-requires-python="&gt;=3.11" arrives unescaped; sizes come with JSON only
    assert {f.requires_python for f in h if "2.15.0" in f.filename} == {">=3.11"}
    assert all(f.size > 10_000_000 for f in j if f.filename.startswith("torch-2.15.0-"))
    assert any(f.filename == "torch-2.10.0-3-cp311-cp311-manylinux_2_28_x86_64.whl" for f in j)  # a re-upload


def test_yanked_and_pep_658_metadata_in_both_forms():
    sha = "ab" * 32
    html = (f'<a href="/f/torch-9.0.0-cp311-cp311-win_amd64.whl#sha256={"cd" * 32}" data-yanked="broken" '
            f'data-core-metadata="sha256={sha}">t</a><a href="/f/torch-9.0.1-cp311-cp311-win_amd64.whl" '
            f'data-dist-info-metadata="true">u</a><a href="/f/torch-9.0.2-cp311-cp311-win_amd64.whl">v</a>')
    a, b, c = parse_html_page(html, "https://idx.example/simple/torch/")
    assert (a.yanked, a.yanked_reason, a.metadata_sha256) == (True, "broken", sha)
    assert a.metadata_url == "https://idx.example/f/torch-9.0.0-cp311-cp311-win_amd64.whl.metadata"
    assert b.metadata and b.metadata_sha256 is None and not c.metadata and c.metadata_url is None
    js = ('{"files": [{"filename": "torch-9.0.0-cp311-cp311-win_amd64.whl", "url": "/f/t.whl", "hashes": {}, '
          '"core-metadata": {"sha256": "' + sha + '"}, "yanked": "bad", "size": "big"}]}')
    (f,) = parse_json_page(js, "https://idx.example/simple/torch/")
    assert f.metadata_sha256 == sha and f.yanked_reason == "bad" and f.size is None


def test_pytorch_page_absolute_links_sha_fragment_and_local_label():
    files = parse_html_page((DATA / "pytorch_cu126.html").read_text(), "https://mirror.example.cn/whl/cu126/torch/")
    f = files[0]
    assert f.filename == "torch-2.6.0+cu126-cp310-cp310-linux_x86_64.whl"  # %2B decoded
    assert f.url.startswith("https://download-r2.pytorch.org/whl/cu126/") and "#" not in f.url
    assert len(f.sha256) == 64 and f.requires_python is None


def test_flat_listing_keeps_only_the_project_and_resolves_relative_links():
    text = (DATA / "aliyun_cu121_flat.html").read_text()
    files = [f for f in parse_html_page(text, "https://mirrors.aliyun.com/pytorch-wheels/cu121/")
             if filename_project(f.filename) == "torch"]
    assert [f.url for f in files] == [
        "https://mirrors.aliyun.com/pytorch-wheels/cu121/torch-2.4.1%2Bcu121-cp311-cp311-linux_x86_64.whl",
        "https://mirrors.aliyun.com/pytorch-wheels/cu121/torch-2.4.1%2Bcu121-cp311-cp311-win_amd64.whl"]


def _index_server(json_ok=True):
    html = (DATA / "pytorch_cu126.html").read_bytes()
    js = (DATA / "pypi_torch.json").read_bytes()

    def torch_page(req):
        if json_ok and "application/vnd.pypi.simple.v1+json" in req.headers.get("accept", ""):
            return Reply(200, js, {"Content-Type": "application/vnd.pypi.simple.v1+json"})
        return Reply(200, html, {"Content-Type": "text/html"})
    return FaultServer({"/simple/torch/": torch_page})


def test_read_project_prefers_json_and_retries_503():
    with _index_server() as srv:
        srv.script("/simple/torch/", Status(503), Status(503))
        page = read_project(srv.url("/simple/"), "Torch", retries=3)
        assert [h.status for h in srv.hits()] == [503, 503, 200]
    assert page.format == "json" and len(page.files) == 987


def test_read_project_html_and_mirror_pointing_upstream():
    with _index_server(json_ok=False) as srv:
        page = read_project(srv.url("/simple"), "torch")
    assert page.format == "html"
    assert page.foreign_hosts() == {"download-r2.pytorch.org"}  # "mirror" whose downloads go upstream


def test_missing_project_is_empty_and_dead_index_is_one_sentence():
    with FaultServer({}) as srv:
        assert read_project(srv.url("/simple/"), "torch").files == []
        srv.script("/simple/torch/", Status(503, times=None))
        with pytest.raises(IndexUnavailable) as err:
            read_project(srv.url("/simple/"), "torch", retries=2)
    assert "HTTP 503 after 2 tries" in str(err.value)


def test_file_index_and_find_links_folder(tmp_path):
    simple = tmp_path / "simple" / "torch"
    simple.mkdir(parents=True)
    (simple / "index.html").write_text('<a href="../../files/torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl'
                                       '#sha256=' + "a" * 64 + '" data-requires-python="&gt;=3.10">x</a>')
    page = read_project((tmp_path / "simple").as_uri(), "torch")
    assert page.files[0].url == (tmp_path / "files").as_uri() + "/torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl"
    assert page.files[0].filename == "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl"
    assert page.files[0].requires_python == ">=3.10" and page.files[0].sha256 == "a" * 64

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "numpy-2.0.0-cp311-cp311-linux_x86_64.whl",
                 "notes.txt"):
        (wheels / name).write_bytes(b"x" * 3)
    got = read_find_links(str(wheels), "torch")
    assert [f.filename for f in got.files] == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert got.files[0].size == 3 and got.files[0].url.startswith("file://")


def test_this_machines_pip_find_links_holds_the_cpu_build():
    folder = Path("/opt/wheels")
    if not folder.is_dir():
        pytest.skip("only on the project's build machine")
    names = [f.filename for f in read_find_links(str(folder), "torch").files]
    assert any(n.startswith("torch-2.13.0+cpu-") for n in names)
