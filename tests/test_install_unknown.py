"""Releases and builds `torch_builds.json` has never seen: a torch 2.16 whose plain PyPI wheel names the CUDA 13.4
runtime, a `+cu134` label. An unknown build is judged from its known neighbours (same CUDA major: the driver
minimum of its first minor, the architectures every known build of that major carries), never credited with
kernels they lack; a known build is preferred when both fit; the plan's `why` names what was inferred.

The indexes are 127.0.0.1 servers holding the recorded real PyPI page of torch and PyTorch-index pages built from
the published build matrix, with the unseen release added beside them."""
import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from fomm_doctor.install import builds, choose
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.index import IndexFile
from fomm_doctor.install.machine import Gpus, Machine, Nvidia, NvidiaGpu
from fomm_doctor.install.target import facts_from_platform_tag
from httpfaults import FaultServer, Reply

DATA = Path(__file__).parent / "data"
META_CUDA = DATA / "metadata" / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.METADATA"
ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": ""}
NEW_WHEEL = "torch-2.16.0-cp312-cp312-manylinux_2_28_x86_64.whl"
NEW_DRIVER = "590.44.01"


def _metadata_2_16() -> bytes:
    """The real 2.14.1 METADATA made a 2.16.0 that pins the CUDA 13.4 toolkit (a runtime the table never saw)."""
    text = META_CUDA.read_text(encoding="utf-8").replace("Version: 2.14.1", "Version: 2.16.0", 1)
    assert "]==13.0.3;" in text  # the pin this test moves to 13.4
    return text.replace("]==13.0.3;", "]==13.4.0;").encode()


def _pypi_with_2_16(server_url: str) -> bytes:
    """The recorded PyPI page of torch plus a 2.16.0 wheel on this server, with PEP 658 metadata."""
    page = json.loads((DATA / "index" / "pypi_torch.json").read_text())
    page["files"].append({"filename": NEW_WHEEL, "url": server_url + "/files/" + NEW_WHEEL,
                          "hashes": {"sha256": "ab" * 32}, "requires-python": ">=3.11", "core-metadata": True})
    return json.dumps(page).encode()


def _pytorch_routes(names):
    return {f"/whl/{b}/torch/": (DATA / "index" / f"pytorch_{b}.html").read_bytes() for b in names}


def _plan(gpu_arch: str) -> dict:
    """`install --dry-run --json` for a Linux x86_64 Python 3.12 machine with one NVIDIA GPU on a new driver."""
    routes = {"/files/" + NEW_WHEEL + ".metadata": _metadata_2_16()}
    with FaultServer(routes) as pypi, FaultServer(_pytorch_routes(["cpu", "cu126", "cu128", "cu129", "cu130",
                                                                   "cu132"])) as pt:
        body = _pypi_with_2_16(pypi.url("").rstrip("/"))
        pypi.routes["/simple/torch/"] = lambda req: Reply(200, body, {"Content-Type":
                                                                      "application/vnd.pypi.simple.v1+json"})
        proc = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", pypi.url("/simple/"),
                       "--pytorch-index", pt.url("/whl/"), "--official-pypi", pypi.url("/simple/"),
                       "--official-pytorch", pt.url("/whl/"), "--platform", "manylinux_2_28_x86_64",
                       "--python-version", "3.12", "--driver", NEW_DRIVER, "--gpu-arch", gpu_arch, env=ENV,
                       timeout=120)
        metadata_read = any(h.path.endswith(".metadata") for h in pypi.hits())
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert metadata_read  # the build of the 2.16 wheel came from its own metadata, not from a guess
    return json.loads(proc.stdout)["plan"]["torch"]


def test_pascal_on_a_new_driver_gets_the_newest_build_known_to_carry_its_kernels():
    t = _plan("6.1")
    assert (t["version"], t["backend"]) == ("2.14.1+cu126", "cu126")
    # the new release was considered and ruled out by what its unknown build was judged from
    assert "2.16.0 was ruled out" in t["why"]
    assert "cu134" in t["why"] and "cu130 and cu132 of torch 2.15" in t["why"] and "sm_75" in t["why"]


def test_turing_gets_the_new_release_and_the_why_names_what_was_inferred():
    t = _plan("7.5")
    assert (t["file"], t["backend"]) == (NEW_WHEEL, "cu134")
    assert "torch 2.16 is not in our build table; judged from 2.15" in t["why"]
    assert "cu134 is not in our build table" in t["why"]
    assert "driver minimum is taken from CUDA 13's first minor (580.65.06)" in t["why"]


# ---- the choice itself, over index files -------------------------------------------------------------------

def _machine(cc: str, driver: str = NEW_DRIVER, tag: str = "manylinux_2_28_x86_64") -> Machine:
    return Machine(facts_from_platform_tag(tag, "3.12"),
                   Gpus(Nvidia(driver, (NvidiaGpu(f"GPU sm_{cc.replace('.', '')}", cc),))))


def _files(*names) -> list:
    return [("pytorch", [IndexFile(n, "https://example.invalid/" + n, "ab" * 32) for n in names])]


def test_a_known_build_is_preferred_when_an_unknown_one_of_the_same_release_also_fits():
    m = _machine("8.6")
    cands, _ = choose.classify(_files("torch-2.16.0+cu134-cp312-cp312-manylinux_2_28_x86_64.whl",
                                      "torch-2.16.0+cu132-cp312-cp312-manylinux_2_28_x86_64.whl"), m)
    picked = choose.choose(cands, None, m)
    assert picked.best.backend == Backend.parse("cu132")
    assert "torch 2.16 is not in our build table; judged from 2.15" in picked.why
    assert "cu134" not in picked.why  # nothing about the unknown build was needed to choose


def test_an_unknown_label_alone_is_taken_on_a_gpu_its_neighbours_cover_and_refused_on_one_they_do_not():
    files = _files("torch-2.16.0+cu134-cp312-cp312-manylinux_2_28_x86_64.whl",
                   "torch-2.14.1+cu126-cp312-cp312-manylinux_2_28_x86_64.whl")
    turing, pascal = _machine("7.5"), _machine("6.1")
    assert choose.choose(choose.classify(files, turing)[0], None, turing).best.version == "2.16.0+cu134"
    picked = choose.choose(choose.classify(files, pascal)[0], None, pascal)
    assert picked.best.version == "2.14.1+cu126"
    assert "is taken to carry only what cu130 and cu132 of torch 2.15 all carry" in picked.why


def test_an_unknown_build_on_an_old_driver_is_refused_by_its_majors_first_minor():
    m = _machine("7.5", driver="575.57.08")  # CUDA 12 drivers: below 13.0's 580.65.06
    files = _files("torch-2.16.0+cu134-cp312-cp312-manylinux_2_28_x86_64.whl",
                   "torch-2.14.1+cu126-cp312-cp312-manylinux_2_28_x86_64.whl")
    picked = choose.choose(choose.classify(files, m)[0], None, m)
    assert picked.best.version == "2.14.1+cu126"
    assert "2.16.0 was ruled out: its CUDA 13.4 needs NVIDIA driver 580.65.06 or newer" in picked.why


def test_a_new_cuda_major_with_no_driver_row_is_never_taken():
    m = _machine("8.6")
    files = _files("torch-2.16.0+cu140-cp312-cp312-manylinux_2_28_x86_64.whl")
    assert choose.choose(choose.classify(files, m)[0], None, m) is None


# ---- the rule, for any release, unknown CUDA 13 minor, platform and GPU ----------------------------------

@settings(max_examples=300, deadline=None)
@given(minor=st.sampled_from([1, 3, 4, 5, 6, 7, 8, 9]), release=st.integers(9, 30),
       pkey=st.sampled_from(["linux-x86_64", "linux-aarch64", "windows-x86_64"]),
       cc=st.sampled_from(["5.0", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "11.0", "12.0", "12.1"]))
def test_property_an_unknown_build_never_carries_what_a_known_neighbour_lacks(minor, release, pkey, cc):
    version, unknown = f"2.{release}.0", Backend.parse(f"cu13{minor}")
    arch = builds.cuda_arch(version, unknown, pkey)
    assert arch.inferred_from and not builds.described(unknown, pkey)
    if builds.cuda_covers(version, unknown, pkey, cc):
        near = (arch.nearest or builds.minor_of(version)) + ".0"
        for known in arch.inferred_from:
            assert builds.cuda_covers(near, Backend.parse(known), pkey, cc), (known, near)
    assert builds.driver_minimum(unknown, "linux") == builds.driver_minimum(Backend.parse("cu130"), "linux")


# ---- check: the table against the newest torch on the index ------------------------------------------------

def _served_check(body: bytes) -> dict:
    """torch.table's row, with torch's page read from a 127.0.0.1 index serving `body`."""
    from fomm_doctor import checks
    from fomm_doctor.checks import table
    with FaultServer({"/simple/torch/": lambda req: Reply(200, body, {"Content-Type":
                                                                      "application/vnd.pypi.simple.v1+json"})}) as s:
        facts = table.probe_newest_torch(s.url("/simple/"), timeout=5.0)
    rows = [r for r in checks.judge_all(_runner_facts(torch_index=facts), builds.load()) if r.id == "torch.table"]
    assert len(rows) == 1
    return rows[0]


def _runner_facts(**extra) -> dict:
    """The facts of test_check_runner's Windows machine (the rows other than torch.table do not matter here)."""
    from test_check_runner import windows_gamer_facts
    return dict(windows_gamer_facts({"probe_error": "not asked here"}), **extra)


def test_check_warns_when_the_index_has_a_torch_newer_than_the_table():
    row = _served_check(_pypi_with_2_16("http://127.0.0.1:9"))
    assert row.status == "warn" and "torch 2.16.0" in row.summary and "judged from 2.15" in row.summary
    assert row.details["newest"] == "2.16.0" and row.fix and not row.run  # advice: nothing for --fix to run


def test_check_is_content_when_the_table_knows_the_newest_torch_on_the_recorded_pypi_page():
    row = _served_check((DATA / "index" / "pypi_torch.json").read_bytes())
    assert row.status == "ok" and row.details["newest"] == "2.15.0", row.summary


def test_check_says_when_the_index_could_not_be_compared():
    row = _served_check(b"<html>not an index</html>")
    assert row.status == "skipped" and "could not be compared" in row.summary, row.summary


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.from_regex(
    r"torch-[0-9]{1,2}\.[0-9]{1,2}\.[0-9](rc1|\.dev3|\+cu134)?-cp312-cp312-[a-z0-9_]{3,12}\.whl", fullmatch=True)),
    max_size=12))
def test_property_the_newest_release_is_a_final_torch_version_listed(names):
    from packaging.version import Version
    from fomm_doctor.checks.table import newest_release
    got = newest_release(names)
    finals = [Version(v) for v in (n.split("-")[1] for n in names if n.startswith("torch-") and n.count("-") >= 2)
              if _is_version(v) and not Version(v).is_prerelease and not Version(v).local]
    assert got == (str(max(finals)) if finals else None)


def _is_version(text: str) -> bool:
    from packaging.version import InvalidVersion, Version
    try:
        Version(text)
        return True
    except InvalidVersion:
        return False
