"""Every file of an install at once (install/fetchall.py), connections found by measurement (net/ranges.py), and
the install from the downloaded files alone (install/execute.py), against real HTTP servers on 127.0.0.1.
"""
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.version import Version

from fomm_doctor.install import fetchall
from fomm_doctor.install.index import IndexFile
from fomm_doctor.install.machine import Interpreter
from fomm_doctor.net import download as dl
from fomm_doctor.net.job import AUTO_CONNECTIONS, MAX_AUTO_CONNECTIONS

sys.path.insert(0, str(Path(__file__).parent))
from httpfaults import Corrupt, FaultServer, Reset, build_wheel, fake_torch_wheel, simple_routes  # noqa: E402

HERE_TAGS = tuple(str(t) for t in sys_tags())
HERE = Interpreter(version="%d.%d.%d" % sys.version_info[:3], platform=sys.platform, machine=os.uname().machine,
                   tags=HERE_TAGS, executable=sys.executable, pip="26.3")


# ---- choosing a wheel ------------------------------------------------------------------------------------------

VERSIONS = st.builds(lambda a, b, pre: f"{a}.{b}" + ("rc1" if pre else ""), st.integers(0, 5), st.integers(0, 5),
                     st.booleans())
TAGS = st.sampled_from(["py3-none-any", "cp311-cp311-manylinux_2_17_x86_64", "cp39-cp39-win_amd64",
                        "cp312-abi3-macosx_11_0_arm64"])
FILES = st.lists(st.tuples(VERSIONS, TAGS, st.booleans(), st.sampled_from([None, ">=3.8", ">=3.99"])),
                 max_size=12)
SPECS = st.sampled_from(["", ">=1.0", "<2", "==3.3", ">=0.5,!=1.1", "~=2.0"])


@settings(max_examples=300, deadline=None)
@given(FILES, SPECS)
def test_the_wheel_picked_is_the_newest_that_fits_and_every_rival_fails_a_rule(files, spec):
    tags = ("cp311-cp311-manylinux_2_17_x86_64", "py3-none-any")
    index = [IndexFile(f"demo-{v}-{t}.whl", f"https://x/demo-{v}-{t}.whl", "0" * 64, rp, yanked)
             for v, t, yanked, rp in files] + [IndexFile("demo-9.9.tar.gz", "https://x/demo-9.9.tar.gz")]
    req = Requirement("demo" + spec)

    def fits(f):
        v, t = f.filename[:-4].split("-", 2)[1:]
        return (not f.yanked and t in tags and req.specifier.contains(v)
                and not (f.requires_python or "").endswith("3.99"))
    picked = fetchall.pick_wheel(index, req, tags, "3.11.4")
    fitting = [f for f in index if f.filename.endswith(".whl") and fits(f)]
    if not fitting:
        assert picked is None
        return
    assert picked in fitting
    newest = max(Version(f.filename.split("-")[1]) for f in fitting)
    assert Version(picked.filename.split("-")[1]) == newest
    if any(f.filename == f"demo-{newest}-cp311-cp311-manylinux_2_17_x86_64.whl" for f in fitting):
        assert picked.filename.endswith("manylinux_2_17_x86_64.whl")  # the more specific tag wins a tie


def test_markers_and_extras_decide_which_requirements_apply():
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    reqs = ["a", "b; sys_platform == 'win32'", "c; extra == 'fast'", "d>=2; python_version >= '3.8'", "not valid (("]
    assert [r.name for r in fetchall.applicable(reqs, env)] == ["a", "d"]
    assert [r.name for r in fetchall.applicable(reqs, env, frozenset({"fast"}))] == ["a", "c", "d"]


# ---- fetching them all -----------------------------------------------------------------------------------------

def _chain(tmp_path: Path) -> list:
    """alpha needs beta[x] and (on Windows only) winonly; beta's extra x needs gamma; 200 kB each to cut mid-file."""
    pad = lambda n: {f"{n}/pad.bin": os.urandom(200_000)}  # noqa: E731
    return [build_wheel(tmp_path, "alpha", "1.0", {"alpha/__init__.py": b"", **pad("alpha")},
                        requires=["beta[x]>=2", "winonly; sys_platform == 'win32'"]),
            build_wheel(tmp_path, "beta", "2.1", {"beta/__init__.py": b"", **pad("beta")},
                        requires=["gamma; extra == 'x'"], extras=["x"]),
            build_wheel(tmp_path, "beta", "1.5", {"beta/__init__.py": b""}),
            build_wheel(tmp_path, "gamma", "0.3", {"gamma/__init__.py": b"", **pad("gamma")}),
            build_wheel(tmp_path, "winonly", "1.0", {"winonly.py": b""})]


def test_requirements_lead_to_every_wheel_fetched_side_by_side_through_resets(tmp_path):
    wheels = _chain(tmp_path)
    with FaultServer(simple_routes(wheels), throttle=400_000) as srv:
        srv.script("/files/gamma-0.3-py3-none-any.whl", Reset(after=50_000))
        with fetchall.Prefetch(srv.url("/simple/"), HERE, tmp_path / "got", cache_dir=tmp_path / "cache",
                               retries=3, timeout=5) as pre:
            big = pre.submit_file([srv.url("/files/" + wheels[0].name)], tmp_path / "got" / "copy.whl", None, None)
            pre.add(["alpha"])
            got = pre.wait()
            assert big.result().path.read_bytes() == wheels[0].read_bytes()
        files = [h.path for h in srv.hits() if h.path.startswith("/files/")]
        most_open = srv.most_open
    assert got.complete and sorted(got.wheels) == ["alpha", "beta", "gamma"]  # winonly: not on this platform
    assert got.wheels["beta"].version == "2.1"
    for w in got.wheels.values():
        assert w.path.read_bytes() == (tmp_path / w.path.name).read_bytes()
    assert files.count("/files/gamma-0.3-py3-none-any.whl") >= 2  # the reset one was fetched again
    assert most_open >= 2  # files came side by side, not one after another


def test_a_file_that_does_not_match_its_sha256_is_refused_and_never_placed(tmp_path):
    wheels = _chain(tmp_path)
    with FaultServer(simple_routes(wheels)) as srv:
        srv.script("/files/gamma-0.3-py3-none-any.whl", Corrupt(at=1000, times=None))
        with fetchall.Prefetch(srv.url("/simple/"), HERE, tmp_path / "got", cache_dir=tmp_path / "cache",
                               retries=2, timeout=5) as pre:
            pre.add(["alpha"])
            got = pre.wait()
    assert not got.complete and "does not match its published sha256" in got.missing["gamma"]
    assert not (tmp_path / "got" / "gamma-0.3-py3-none-any.whl").exists()
    assert sorted(got.wheels) == ["alpha", "beta"]


def test_a_project_with_no_fitting_wheel_is_missing_with_its_reason(tmp_path):
    wheels = _chain(tmp_path)
    with FaultServer(simple_routes(wheels)) as srv:
        with fetchall.Prefetch(srv.url("/simple/"), HERE, tmp_path / "got", cache_dir=tmp_path / "cache",
                               retries=2, timeout=5) as pre:
            pre.add(["beta>=9", "nosuchproject"])
            got = pre.wait()
    assert "no wheel on the index fits beta>=9" in got.missing["beta"]
    assert "nosuchproject" in got.missing and not got.wheels


# ---- how many connections: measured ----------------------------------------------------------------------------

def test_connections_grow_while_throughput_grows_up_to_the_cap(tmp_path):
    data = os.urandom(24_000_000)
    with FaultServer({"/big.bin": data}, throttle=1_000_000) as srv:
        res = dl.download([srv.url("/big.bin")], tmp_path / "big.bin", cache_dir=tmp_path / "c", size=len(data))
        ranged = [h for h in srv.hits("/big.bin") if h.status == 206]
    assert res.path.read_bytes() == data
    assert AUTO_CONNECTIONS < res.connections <= MAX_AUTO_CONNECTIONS
    assert len(ranged) > AUTO_CONNECTIONS


def test_connections_stop_growing_when_the_line_itself_is_full(tmp_path):
    """Each connection may have 1 MB/s but the line carries 3 MB/s in all: connections beyond the first few
    bring nothing, so the count measured is given back and never reaches the cap."""
    data = os.urandom(16_000_000)
    with FaultServer({"/big.bin": data}, throttle=1_000_000, link=3_000_000) as srv:
        res = dl.download([srv.url("/big.bin")], tmp_path / "big.bin", cache_dir=tmp_path / "c", size=len(data))
    assert res.path.read_bytes() == data
    assert res.connections < MAX_AUTO_CONNECTIONS


def test_connections_asked_for_are_used_as_they_are(tmp_path):
    data = os.urandom(6_000_000)
    with FaultServer({"/big.bin": data}, throttle=2_000_000) as srv:
        res = dl.download([srv.url("/big.bin")], tmp_path / "big.bin", cache_dir=tmp_path / "c", size=len(data),
                          connections=3)
    assert res.path.read_bytes() == data and res.connections == 3


# ---- the whole install: every file fetched here, pip reads no index --------------------------------------------

NO_OFFICIAL = ["--official-pypi", "none", "--official-pytorch", "none"]
ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "COLUMNS": "250"}


@pytest.fixture
def venv(tmp_path):
    """A fresh virtual environment with pip (what a user gets from `python -m venv`)."""
    import subprocess
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "v")], check=True, timeout=300)
    return str(tmp_path / "v" / "bin" / "python")


def _installed(python: str) -> dict:
    import subprocess
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True).stdout)


def _pip_asked(srv) -> list:
    return [h.path for h in srv.hits() if "pip/" in h.headers.get("user-agent", "")]


@pytest.mark.skipif(os.name == "nt", reason="the venv layout here is POSIX")
def test_install_fetches_every_file_itself_and_pip_reads_no_index(venv, tmp_path):
    from conftest import run_cli
    chain = _chain(tmp_path)
    torch = fake_torch_wheel(tmp_path, "9.7.0+cpu", payload_bytes=9_000_000, requires=["alpha>=1"])
    with FaultServer(simple_routes([torch, *chain], metadata=True), throttle=1_000_000) as srv:
        proc = run_cli("install", "--python", venv, "--only", "torch", "--yes", "--mirror", srv.url("/simple/"),
                       *NO_OFFICIAL, "--cache-dir", tmp_path / "cache", env=ENV, timeout=300)
        pip_asked, most_open = _pip_asked(srv), srv.most_open
        paths = [h.path for h in srv.hits()]
    assert proc.returncode == 0, proc.stderr[-2000:]
    have = _installed(venv)
    assert have["torch"] == "9.7.0+cpu" and have["alpha"] == "1.0" and have["beta"] == "2.1"
    assert have["gamma"] == "0.3" and "winonly" not in have
    assert pip_asked == []  # every request came from our downloader; pip installed from disk
    assert "/files/" + torch.name.replace("+", "%2B") + ".metadata" in paths  # torch's needs, before its wheel
    assert most_open >= AUTO_CONNECTIONS  # torch's ranges side by side (and the dependencies beside them)
    out = " ".join(proc.stdout.split())
    assert "--no-index --find-links" in out


@pytest.mark.skipif(os.name == "nt", reason="the venv layout here is POSIX")
def test_a_dependency_that_cannot_be_verified_here_is_left_to_pip_and_said(venv, tmp_path):
    from conftest import run_cli
    loose = build_wheel(tmp_path, "loose", "1.0", {"loose.py": b"X = 1\n"})
    torch = fake_torch_wheel(tmp_path, "9.7.1+cpu", payload_bytes=100_000, requires=["loose"])
    routes = simple_routes([torch])
    routes["/files/" + loose.name] = loose.read_bytes()
    page = json.dumps({"meta": {"api-version": "1.0"}, "name": "loose",  # a page that publishes no sha256
                       "files": [{"filename": loose.name, "url": "/files/" + loose.name, "hashes": {}}]}).encode()
    from httpfaults import Reply
    routes["/simple/loose/"] = lambda req: Reply(200, page, {"Content-Type": "application/vnd.pypi.simple.v1+json"})
    with FaultServer(routes) as srv:
        proc = run_cli("install", "--python", venv, "--only", "torch", "--yes", "--mirror", srv.url("/simple/"),
                       *NO_OFFICIAL, "--cache-dir", tmp_path / "cache", env=ENV, timeout=300)
        pip_asked = _pip_asked(srv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _installed(venv)["loose"] == "1.0"
    out = " ".join(proc.stdout.split())
    assert "loose could not be fetched here" in out and "has no published sha256" in out
    assert "/simple/loose/" in pip_asked  # pip, not us, took the unverifiable file from the index
    assert not (tmp_path / "cache" / "wheels" / loose.name).exists()


def test_an_index_lends_its_credentials_only_to_its_own_origin():
    from fomm_doctor.net.redact import with_credentials_of
    index = "https://alice:s3cret@mirror.example/simple/"
    assert with_credentials_of(index, "https://mirror.example/files/a.whl") == \
        "https://alice:s3cret@mirror.example/files/a.whl"
    assert with_credentials_of(index, "https://cdn.example/files/a.whl") == "https://cdn.example/files/a.whl"
    assert with_credentials_of(index, "http://mirror.example/files/a.whl") == "http://mirror.example/files/a.whl"
    assert with_credentials_of(index, "https://bob:x@mirror.example/a.whl") == "https://bob:x@mirror.example/a.whl"
    assert with_credentials_of("https://mirror.example/simple/", "https://mirror.example/a.whl") == \
        "https://mirror.example/a.whl"
