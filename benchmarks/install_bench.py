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
    ap.add_argument("--scenario", choices=["drops", "corrupt", "throttled", "all"], default="all",
                    help="drops: resets and a stall; corrupt: one response arrives with a flipped byte; "
                         "throttled: clean link, each connection throttled, vs pip 26.3 with no flags")
    args = ap.parse_args()
    for scenario in (["drops", "corrupt", "throttled"] if args.scenario == "all" else [args.scenario]):
        size, rate = (60, 2.0) if scenario == "throttled" else (100, 40.0)
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


# ---- scenario `throttled`: no faults, every connection throttled; fomm-doctor with no flags vs pip 26.3

PIP_VERSION = "26.3"

def pip_venv(version: str = PIP_VERSION) -> str:
    """A venv holding pip `version` from PyPI (made once, kept in the user cache); returns its python."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fomm-doctor-bench" / f"pip-{version}"
    py = home / "bin" / "python"
    if not py.exists() or pip_version(str(py)) != version:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"pip=={version}"],
                       check=True)
    return str(py)


def pip_version(python: str) -> str:
    out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else "?"


def throttled_contenders(args, work: Path, vpy: str) -> list:
    """(name, command without the index) for pip 26.3 and fomm-doctor with no connection flag."""
    pip26 = pip_venv()
    fomm = ["install", "--python", vpy, "--only", "torch", "--yes", "--json", "--timeout", str(args.timeout)]
    return [(f"pip {pip_version(pip26)} (no flags)", [pip26, "-m", "pip", "--python", vpy, "install",
                                                      "--no-cache-dir", "--timeout", str(args.timeout)]),
            ("fomm-doctor install (no flags)", [sys.executable, "-m", "fomm_doctor"] + fomm
             + ["--cache-dir", str(work / "cache-noflag")])]


def bench_throttled(args, scenario="throttled"):
    work, wheel, vpy, path = fresh_target(args)
    env = clean_env()
    rows = []
    for name, cmd in throttled_contenders(args, work, vpy):
        with FaultServer(simple_routes([wheel]), throttle=int(args.throttle_mbps * 1_000_000)) as srv:
            index = srv.url("/simple/")
            cmd = cmd + (["--index-url", index, "torch"] if name.startswith("pip") else ["--mirror", index])
            subprocess.run([vpy, "-m", "pip", "uninstall", "-y", "-q", "torch"], capture_output=True)
            wall, rc, tail = run(cmd, env)
            hits = srv.hits(path)
        rows.append({"tool": name, "wall_s": round(wall, 2), "exit": rc, "installed": installed(vpy),
                     "file_requests": len(hits), "ranged": sum(1 for h in hits if h.status == 206),
                     "mb_served": round(sum(h.sent for h in hits) / 1e6, 1), "last_line": tail if rc else ""})
    print_throttled(args, rows)
    shutil.rmtree(work, ignore_errors=True)
    return rows


def print_throttled(args, rows: list):
    print(f"\nscenario throttled: {args.size_mb} MB wheel, {args.throttle_mbps:g} MB/s per connection, "
          f"no faults, timeout {args.timeout} s\n")
    print_table(rows, 52, "ranged", "206")
    pip_row = rows[0]
    for r in rows[1:]:
        ok = r["exit"] == 0 and pip_row["exit"] == 0 and r["wall_s"] > 0
        ratio = f"{pip_row['wall_s'] / r['wall_s']:.2f}x" if ok else "n/a (a contender failed)"
        print(f"\nratio {pip_row['tool']} / {r['tool']}: {ratio}")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
