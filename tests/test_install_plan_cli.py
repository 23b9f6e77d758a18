"""`install --dry-run --json` for another machine against 127.0.0.1 indexes serving the recorded real PyPI page
of torch and PyTorch-index pages built from the published build matrix; and what a wheel is by its metadata."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import run_cli
from fomm_doctor.errors import UserError
from fomm_doctor.install import execute, metadata
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.hashes import HashCheck
from fomm_doctor.install.machine import Gpus, Interpreter, Machine
from fomm_doctor.install.plan import Plan, TorchPlan
from fomm_doctor.install.sources import Mirror
from httpfaults import FaultServer, Reply, fake_torch_wheel

DATA = Path(__file__).parent / "data"
META_CUDA = DATA / "metadata" / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.METADATA"
META_CPU = DATA / "metadata" / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.METADATA"
ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": ""}


def _pypi_page(req):
    return Reply(200, (DATA / "index" / "pypi_torch.json").read_bytes(),
                 {"Content-Type": "application/vnd.pypi.simple.v1+json"})


def _pytorch_routes(builds):
    routes = {}
    for b in builds:
        page = DATA / "index" / f"pytorch_{b}.html"
        routes[f"/whl/{b}/torch/"] = page.read_bytes() if page.exists() else None
    return {k: v for k, v in routes.items() if v is not None}


def _dry_run(*extra, pypi, pytorch):
    proc = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", pypi.url("/simple/"),
                   "--pytorch-index", pytorch.url("/whl/"), "--official-pypi", pypi.url("/simple/"),
                   "--official-pytorch", pytorch.url("/whl/"), *extra, env=ENV, timeout=120)
    return proc


def test_plan_for_another_machine_against_local_indexes():
    pages = ["cpu", "cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130", "cu132"]
    with FaultServer({"/simple/torch/": _pypi_page}) as pypi, FaultServer(_pytorch_routes(pages)) as pt:
        proc = _dry_run("--platform", "manylinux_2_28_x86_64", "--python-version", "3.12", "--driver", "535.104.05",
                        "--gpu-arch", "8.6", pypi=pypi, pytorch=pt)
        assert proc.returncode == 0, proc.stderr[-1500:]
        t = json.loads(proc.stdout)["plan"]["torch"]
        read = {h.path for h in pt.hits()}
    assert (t["version"], t["backend"]) == ("2.14.1+cu126", "cu126")
    assert t["file"] == "torch-2.14.1+cu126-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert "2.15.0 was ruled out" in t["why"] and "535.104.05" in t["why"]
    assert t["links_elsewhere"] == ["download-r2.pytorch.org"]  # this "mirror" sends the download upstream
    assert {"/whl/cu126/torch/", "/whl/cpu/torch/"} <= read and "/whl/cu130/torch/" not in read
    assert all(s["ok"] for s in t["sources"])
    assert t["verified"] == "sha256" and t["hash_check"]["outcome"] == "official"


def test_plan_for_another_machine_windows_cpu_and_a_dead_pytorch_index():
    with FaultServer({"/simple/torch/": _pypi_page}) as pypi, FaultServer({}) as pt:
        proc = _dry_run("--platform", "win_amd64", "--python-version", "3.11", "--driver", "none", pypi=pypi, pytorch=pt)
        assert proc.returncode == 0, proc.stderr[-1500:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert t["file"] == "torch-2.15.0-cp311-cp311-win_amd64.whl" and t["backend"] == "cpu"


@pytest.mark.parametrize("args,sentence", [
    (["--platform", "sparc_64", "--python-version", "3.12"], "is not a platform tag we know"),
    (["--platform", "win_amd64"], "needs both --platform and --python-version"),
    (["--platform", "win_amd64", "--python-version", "3.12", "--gpu-arch", "sm86", "--driver", "560.94"],
     "--gpu-arch takes compute capabilities"),
    (["--platform", "win32", "--python-version", "3.12"], "no wheels for 32-bit Python"),
])
def test_bad_target_options_are_one_sentence(args, sentence):
    with FaultServer({"/simple/torch/": _pypi_page}) as pypi, FaultServer({}) as pt:
        proc = _dry_run(*args, pypi=pypi, pytorch=pt)
    assert proc.returncode != 0 and sentence in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("py,build", [
    ({"platform": "linux", "machine": "x86_64", "version": "3.11.7"}, "cu130"),
    ({"platform": "linux", "machine": "aarch64", "version": "3.12.1"}, "cu130"),  # markers say Linux, any machine
    ({"platform": "win32", "machine": "AMD64", "version": "3.11.7"}, "cpu"),
])
def test_real_torch_metadata_says_which_build(py, build):
    py = Interpreter.from_facts(py)
    assert str(metadata.build_from_requires(metadata.requires_dist(META_CUDA.read_text()), py)) == build
    assert str(metadata.build_from_requires(metadata.requires_dist(META_CPU.read_text()), py)) == "cpu"


def _plan_for(wheel, backend):
    """A plan for a Linux aarch64 machine whose torch wheel's build was judged from the table."""
    torch = TorchPlan("2.14.1", Backend.parse(backend), "table", "", wheel.name, (), None, "local",
                      HashCheck("off", None, None), None, (), ())
    return Plan(Machine(Interpreter("3.11.7", "linux", "aarch64")), Mirror("pip", None, None), None, (), torch)


def test_a_plain_wheel_is_checked_by_its_own_metadata_before_install(tmp_path):
    reqs = metadata.requires_dist(META_CUDA.read_text())
    wheel = fake_torch_wheel(tmp_path, "2.14.1", requires=reqs)
    with pytest.raises(UserError, match=r"is a cu130 build by its own metadata, not the cpu build planned; nothing "
                                        r"was installed"):
        execute.check_build(wheel, _plan_for(wheel, "cpu"))
    checked = execute.check_build(wheel, _plan_for(wheel, "cu132"))  # same CUDA major: the metadata's word wins
    assert (str(checked.backend), checked.backend_from) == ("cu130", "metadata")
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a readable wheel"):
        execute.check_build(tmp_path / "junk.whl", _plan_for(tmp_path / "junk.whl", "cpu"))


def test_pep_658_metadata_decides_a_plain_wheel(tmp_path):
    """An index that offers `.metadata` files: the plain aarch64 wheel is judged by them (a CUDA build, so a CPU
    machine takes the +cpu wheel), and metadata failing its published sha256 is not believed."""
    body = META_CUDA.read_bytes()
    name = "torch-2.14.1-cp311-cp311-manylinux_2_28_aarch64.whl"  # METADATA of the x86_64 file: same Requires-Dist
    cpu = "torch-2.14.1+cpu-cp311-cp311-manylinux_2_28_aarch64.whl"

    def page(sha):
        return ("<html><body>"
                f'<a href="/f/{name}#sha256={"a" * 64}" data-core-metadata="sha256={sha}">{name}</a>'
                f'<a href="/f/{cpu.replace("+", "%2B")}#sha256={"b" * 64}">{cpu}</a></body></html>').encode()
    from fomm_doctor.install import plan as installer
    from fomm_doctor.install.index import parse_html_page
    from fomm_doctor.install.options import InstallOptions
    from fomm_doctor.install.target import facts_from_platform_tag
    py = facts_from_platform_tag("manylinux_2_28_aarch64", "3.11")
    for sha, expect in ((hashlib.sha256(body).hexdigest(), "metadata"), ("c" * 64, "table")):
        with FaultServer({f"/f/{name}.metadata": body}) as srv:
            files = parse_html_page(page(sha).decode(), srv.url("/simple/torch/"))
            src = installer.mirrors.Source("URL", "index", srv.url("/simple/"), "pypi")
            opts = InstallOptions(only=("torch",), platform="manylinux_2_28_aarch64", python_version="3.11")
            machine = installer.target.machine(opts, lambda: Gpus(), py=py)
            cands, picked = installer._choose([(src, files)], machine, opts, None)
        plain = next(c for c in cands if c.filename == name)
        assert plain.backend_from == expect and str(plain.backend) == "cu130"
        assert picked.best.filename == cpu
