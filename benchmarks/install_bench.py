"""Benchmark (not a test): `fomm-doctor install` vs plain `pip install` of the same large wheel through the same
throttled, dropping local server. Prints wall time and outcome side by side.

    python benchmarks/install_bench.py [--size-mb 100] [--throttle-mbps 40] [--drop-every-mb 25] [--connections 4]
    python benchmarks/install_bench.py --scenario throttled [--size-mb 60] [--throttle-mbps 2]

The server (tests/httpfaults.py) limits each connection to --throttle-mbps, answers the first index request
with 503, resets every response after --drop-every-mb, and stalls one response for longer than the client
timeout. Each contender installs into the same fresh venv (torch uninstalled in between), with no cache.

Scenario `throttled`: a clean link (no faults) that throttles each connection, the way many mirrors and
middleboxes do. `fomm-doctor install` with no connection flag (auto: parallel ranges for a large file)
against pip 26.3, installed from PyPI into its own venv (cached in ~/.cache/fomm-doctor-bench), both
installing into the same target venv. Prints wall seconds side by side and the ratio pip / fomm-doctor.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from httpfaults import FaultServer, Corrupt, Pass, Reset, Stall, Status, fake_torch_wheel, simple_routes  # noqa: E402


def big_torch_wheel(folder: Path, size_mb: int) -> Path:
    """A pure-Python `torch` wheel padded with incompressible bytes (what matters here is the transfer)."""
    return fake_torch_wheel(folder, "9.2.0+cpu", payload_bytes=size_mb * 1_000_000)


def run(cmd, env, timeout=900):
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        rc, tail = proc.returncode, (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        rc, tail = None, [f"gave up after {timeout} s"]
    return time.monotonic() - t0, rc, tail[0][:140]


def installed(python) -> str:
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=None, help="wheel size (default 100, throttled: 60)")
    ap.add_argument("--throttle-mbps", type=float, default=None,
                    help="megabytes per second per connection (default 40, throttled: 2)")
    ap.add_argument("--drop-every-mb", type=float, default=25.0)
    ap.add_argument("--stall-s", type=float, default=8.0)
    ap.add_argument("--timeout", type=int, default=4)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="throttled: runs of each tool, interleaved (median)")
    ap.add_argument("--real-torch", action="store_true", help=f"throttled: serve {REAL_TORCH.name} (the only "
                    f"torch ever installed here) instead of a fake wheel of --size-mb")
    ap.add_argument("--scenario", choices=["drops", "corrupt", "throttled", "all"], default="throttled",
                    help="drops: resets and a stall; corrupt: one response arrives with a flipped byte; "
                         "throttled: clean link, each connection throttled, vs pip 26.3 with no flags")
    args = ap.parse_args()
    for scenario in (["drops", "corrupt", "throttled"] if args.scenario == "all" else [args.scenario]):
        size, rate = (190, 2.0) if scenario == "throttled" else (100, 40.0)
        run_args = argparse.Namespace(**dict(vars(args), size_mb=args.size_mb or size,
                                             throttle_mbps=args.throttle_mbps or rate))
        (bench_throttled if scenario == "throttled" else bench)(run_args, scenario)


def fresh_target(args) -> tuple:
    """(work folder, the big wheel, a fresh venv's python, the wheel's path on the server)."""
    work = Path(tempfile.mkdtemp(prefix="install-bench-"))
    wheel = big_torch_wheel(work, args.size_mb)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return work, wheel, str(venv / "bin" / "python"), "/files/" + wheel.name.replace("+", "%2B")


def clean_env(**extra) -> dict:
    """This environment without pip settings, so every contender reads only the bench's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}, **extra)
    return env


def bench(args, scenario):
    work, wheel, vpy, path = fresh_target(args)
    base_env = clean_env(OMP_NUM_THREADS="1")
    rows = []
    for name, cmd in fault_contenders(args, vpy):
        with FaultServer(simple_routes([wheel]), throttle=int(args.throttle_mbps * 1_000_000)) as srv:
            script_faults(srv, args, scenario, name, path, wheel.stat().st_size)
            index = srv.url("/simple/")
            if cmd is None:
                conns = "1" if "1 connection" in name else str(args.connections)
                cmd = [sys.executable, "-m", "fomm_doctor", "install", "--python", vpy, "--mirror", index, "--only",
                       "torch", "--yes", "--json", "--timeout", str(args.timeout), "--connections", conns,
                       "--cache-dir", str(work / f"cache-{conns}")]
            else:
                cmd = cmd + ["--index-url", index, "torch"]
            subprocess.run([vpy, "-m", "pip", "uninstall", "-y", "-q", "torch"], capture_output=True)
            wall, rc, tail = run(cmd, base_env)
            hits = srv.hits(path)
        rows.append({"tool": name, "wall_s": round(wall, 1), "exit": rc, "installed": installed(vpy),
                     "file_requests": len(hits),
                     "range_resumes": sum(1 for h in hits if h.status == 206 and (h.range_start or 0) > 0),
                     "mb_served": round(sum(h.sent for h in hits) / 1e6, 1), "last_line": tail if rc else ""})
    print_faults(args, scenario, rows)
    shutil.rmtree(work, ignore_errors=True)


def fault_contenders(args, vpy: str) -> list:
    """(name, pip command without the index, or None for fomm-doctor) for the `drops` and `corrupt` scenarios."""
    pip_new = [sys.executable, "-m", "pip", "--python", vpy]  # this machine's newer pip, same target
    return [
        (f"pip {pip_version(vpy)} (venv's own)",
         [vpy, "-m", "pip", "install", "--no-cache-dir", "--timeout", str(args.timeout)]),
        (f"pip {pip_version(sys.executable)} --resume-retries 10",
         pip_new + ["install", "--no-cache-dir", "--timeout", str(args.timeout), "--resume-retries", "10"]),
        ("fomm-doctor install (1 connection)", None),
        (f"fomm-doctor install --connections {args.connections}", None),
    ]


def script_faults(srv, args, scenario: str, name: str, path: str, size: int) -> None:
    """The first index request gets 503; then resets and a stall (`drops`) or one flipped byte (`corrupt`)."""
    srv.script("/simple/torch/", Status(503))
    drop = int(args.drop_every_mb * 1_000_000)
    if scenario == "drops":
        srv.script(path, Reset(after=drop), Stall(after=drop // 2, seconds=args.stall_s), Reset(after=drop, times=None))
    elif "--connections" in name:  # after the 1-byte probe, the range holding the middle byte is corrupted
        srv.script(path, Pass(), Corrupt(at=size // 2, times=args.connections))
    else:
        srv.script(path, Corrupt(at=size // 2))


def print_table(rows: list, width: int, ranged: str, ranged_title: str) -> None:
    """One line per contender; `ranged` names the column of ranged requests, shown as `ranged_title`."""
    rw = len(ranged_title)
    print(f"{'tool':{width}} {'wall s':>7} {'exit':>5} {'installed':>12} {'requests':>9} {ranged_title:>{rw}} "
          f"{'MB served':>10}")
    for r in rows:
        print(f"{r['tool']:{width}} {r['wall_s']:>7} {str(r['exit']):>5} {r['installed']:>12} "
              f"{r['file_requests']:>9} {r[ranged]:>{rw}} {r['mb_served']:>10}")
        if r["last_line"]:
            print(f"{'':{width}}   -> {r['last_line']}")


def print_faults(args, scenario: str, rows: list) -> None:
    faults = (f"reset every {args.drop_every_mb:g} MB, one {args.stall_s:g} s stall" if scenario == "drops"
              else "one response with a flipped byte in the middle of the file")
    print(f"\nscenario {scenario}: {args.size_mb} MB wheel, {args.throttle_mbps:g} MB/s per connection, {faults}, "
          f"first index request 503, timeout {args.timeout} s\n")
    print_table(rows, 42, "range_resumes", "ranged>0")
    print("\n" + json.dumps(rows))


# ---- scenario `throttled`: no faults, every connection throttled; torch and its real dependencies, each tool
# with no flags, into a fresh venv: fomm-doctor vs pip 26.3 vs uv, interleaved, median of --rounds

PIP_VERSION = "26.3"
# torch 2.13's own Requires-Dist (read from the real wheel when /opt/wheels has it)
TORCH_REQUIRES = ["filelock", "typing-extensions>=4.10.0", "setuptools>=77.0.3", "sympy>=1.13.3",
                  "networkx>=2.5.1", "jinja2", "fsspec>=0.8.5"]
REAL_TORCH = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


def bench_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fomm-doctor-bench"


def pip_venv(version: str = PIP_VERSION) -> str:
    """A venv holding pip `version` and uv from PyPI (made once, kept in the user cache); returns its python."""
    home = bench_home() / f"pip-{version}"
    py = home / "bin" / "python"
    if not py.exists() or pip_version(str(py)) != version:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"pip=={version}"],
                       check=True)
    if not (home / "bin" / "uv").exists():
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "uv"], check=True)
    return str(py)


def pip_version(python: str) -> str:
    out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else "?"


def uv_version(uv: str) -> str:
    out = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else "?"


def torch_requires() -> list:
    if REAL_TORCH.is_file():
        import zipfile
        with zipfile.ZipFile(REAL_TORCH) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        return [l.split(":", 1)[1].strip() for l in meta.splitlines()
                if l.startswith("Requires-Dist:") and "extra ==" not in l]
    return TORCH_REQUIRES


def dependency_wheels(requires: list) -> list:
    """The real wheels of torch's dependencies for this Python, downloaded once from PyPI into the bench cache."""
    folder = bench_home() / f"deps-py{sys.version_info[0]}{sys.version_info[1]}"
    if not folder.is_dir() or not any(folder.glob("*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary", ":all:", "--dest", str(folder), *requires], check=True)
    return sorted(folder.glob("*.whl"))


def throttled_contenders(args, pip26: str) -> list:
    """(name, command given the target python, the index and a fresh cache folder) for each tool, no flags."""
    uv = str(Path(pip26).parent / "uv")
    return [
        (f"pip {pip_version(pip26)}", lambda vpy, index, cache: [
            pip26, "-m", "pip", "--python", vpy, "install", "--no-cache-dir", "--index-url", index, "torch"]),
        (f"uv {uv_version(uv)}", lambda vpy, index, cache: [
            uv, "pip", "install", "--python", vpy, "--no-cache", "--index-url", index, "torch"]),
        ("fomm-doctor install", lambda vpy, index, cache: [
            sys.executable, "-m", "fomm_doctor", "install", "--python", vpy, "--only", "torch", "--yes", "--json",
            "--mirror", index, "--official-pypi", "none", "--official-pytorch", "none", "--cache-dir", cache]),
    ]


def bench_throttled(args, scenario="throttled"):
    work = Path(tempfile.mkdtemp(prefix="install-bench-"))
    requires = torch_requires()
    deps = dependency_wheels(requires)
    if args.real_torch:
        torch = REAL_TORCH
    else:
        torch = fake_torch_wheel(work, "2.13.0+cpu", payload_bytes=args.size_mb * 1_000_000, requires=requires)
    routes = simple_routes([torch, *deps], metadata=True)
    contenders = throttled_contenders(args, pip_venv())
    env = clean_env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", OMP_NUM_THREADS="1")
    rows = []
    for rnd in range(args.rounds):  # interleaved: the machine's load falls on every tool alike
        for name, make in contenders:
            venv = work / f"venv-{rnd}-{len(rows)}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            vpy = str(venv / "bin" / "python")
            with FaultServer(routes, throttle=int(args.throttle_mbps * 1_000_000)) as srv:
                cmd = make(vpy, srv.url("/simple/"), str(work / f"cache-{rnd}"))
                wall, rc, tail = run(cmd, env)
                hits = srv.hits()
            got = installed_set(vpy)
            rows.append({"tool": name, "round": rnd, "wall_s": round(wall, 2), "exit": rc,
                         "installed": got.get("torch", "not installed"), "packages": len(got),
                         "file_requests": sum(1 for h in hits if h.path.startswith("/files/")),
                         "ranged": sum(1 for h in hits if h.status == 206),
                         "mb_served": round(sum(h.sent for h in hits) / 1e6, 1), "last_line": tail if rc else ""})
            shutil.rmtree(venv, ignore_errors=True)
    print_throttled(args, torch, deps, rows, [n for n, _ in contenders])
    shutil.rmtree(work, ignore_errors=True)
    return rows


def installed_set(python: str) -> dict:
    """{name: version} of what the target holds besides pip (each tool must install the same set)."""
    code = ("import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower(): d.version "
            "for d in m.distributions() if d.metadata['Name'].lower() != 'pip'}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout
    return json.loads(out or "{}")


def median(xs: list) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def print_throttled(args, torch: Path, deps: list, rows: list, names: list):
    mb = (torch.stat().st_size + sum(d.stat().st_size for d in deps)) / 1e6
    print(f"\nscenario throttled: torch wheel {torch.stat().st_size / 1e6:.0f} MB"
          f"{' (real torch 2.13.0+cpu)' if args.real_torch else ' (fake, incompressible)'} + {len(deps)} real "
          f"dependency wheels from PyPI ({mb:.0f} MB in all), {args.throttle_mbps:g} MB/s per connection, no faults, "
          f"each tool with no flags into a fresh venv, {args.rounds} rounds interleaved\n")
    print_table(rows, 24, "ranged", "206")
    med = {n: median([r["wall_s"] for r in rows if r["tool"] == n]) for n in names}
    ok = {n: all(r["exit"] == 0 for r in rows if r["tool"] == n) for n in names}
    ours = names[-1]
    print()
    for n in names:
        print(f"median {n:24} {med[n]:7.2f} s" + ("" if ok[n] else "  (some runs failed)"))
    for n in names[:-1]:
        ratio = f"{med[n] / med[ours]:.2f}x" if ok[n] and ok[ours] else "n/a (a contender failed)"
        print(f"ratio {n} / {ours}: {ratio}")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
