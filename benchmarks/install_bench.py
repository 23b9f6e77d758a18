"""Benchmark (not a test): `fomm-doctor install` vs plain `pip install` of the same large wheel through the same
throttled, dropping local server. Prints wall time and outcome side by side.

    python benchmarks/install_bench.py [--size-mb 100] [--throttle-mbps 40] [--drop-every-mb 25] [--connections 4]

The server (tests/httpfaults.py) limits each connection to --throttle-mbps, answers the first index request
with 503, resets every response after --drop-every-mb, and stalls one response for longer than the client
timeout. Each contender installs into the same fresh venv (torch uninstalled in between), with no cache.
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
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--throttle-mbps", type=float, default=40.0, help="megabytes per second per connection")
    ap.add_argument("--drop-every-mb", type=float, default=25.0)
    ap.add_argument("--stall-s", type=float, default=8.0)
    ap.add_argument("--timeout", type=int, default=4)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--scenario", choices=["drops", "corrupt", "all"], default="all",
                    help="drops: resets and a stall; corrupt: one response arrives with a flipped byte")
    args = ap.parse_args()
    for scenario in (["drops", "corrupt"] if args.scenario == "all" else [args.scenario]):
        bench(args, scenario)


def bench(args, scenario):

    work = Path(tempfile.mkdtemp(prefix="install-bench-"))
    wheel = big_torch_wheel(work, args.size_mb)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    vpy = str(venv / "bin" / "python")
    pip_new = [sys.executable, "-m", "pip", "--python", vpy]  # this machine's newer pip, same target
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    base_env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
                     "OMP_NUM_THREADS": "1"})
    pip_versions = {
        "venv pip": subprocess.run([vpy, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()[1],
        "new pip": subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                                  text=True).stdout.split()[1]}

    drop = int(args.drop_every_mb * 1_000_000)
    path = "/files/" + wheel.name.replace("+", "%2B")
    contenders = [
        (f"pip {pip_versions['venv pip']} (venv's own)",
         [vpy, "-m", "pip", "install", "--no-cache-dir", "--timeout", str(args.timeout)]),
        (f"pip {pip_versions['new pip']} --resume-retries 10",
         pip_new + ["install", "--no-cache-dir", "--timeout", str(args.timeout), "--resume-retries", "10"]),
        ("fomm-doctor install (1 connection)", None),
        (f"fomm-doctor install --connections {args.connections}", None),
    ]
    rows = []
    for name, cmd in contenders:
        with FaultServer(simple_routes([wheel]), throttle=int(args.throttle_mbps * 1_000_000)) as srv:
            srv.script("/simple/torch/", Status(503))
            if scenario == "drops":
                srv.script(path, Reset(after=drop), Stall(after=drop // 2, seconds=args.stall_s),
                           Reset(after=drop, times=None))
            elif "--connections" in name:  # after the 1-byte probe, the range holding the middle byte is corrupted
                srv.script(path, Pass(), Corrupt(at=wheel.stat().st_size // 2, times=args.connections))
            else:
                srv.script(path, Corrupt(at=wheel.stat().st_size // 2))
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
            resumed = sum(1 for h in hits if h.status == 206 and (h.range_start or 0) > 0)
            mb = sum(h.sent for h in hits) / 1e6
        rows.append({"tool": name, "wall_s": round(wall, 1), "exit": rc, "installed": installed(vpy),
                     "file_requests": len(hits), "range_resumes": resumed, "mb_served": round(mb, 1),
                     "last_line": tail if rc else ""})

    faults = (f"reset every {args.drop_every_mb:g} MB, one {args.stall_s:g} s stall" if scenario == "drops"
              else "one response with a flipped byte in the middle of the file")
    print(f"\nscenario {scenario}: {args.size_mb} MB wheel, {args.throttle_mbps:g} MB/s per connection, {faults}, "
          f"first index request 503, timeout {args.timeout} s\n")
    print(f"{'tool':42} {'wall s':>7} {'exit':>5} {'installed':>12} {'requests':>9} {'ranged>0':>8} {'MB served':>10}")
    for r in rows:
        print(f"{r['tool']:42} {r['wall_s']:>7} {str(r['exit']):>5} {r['installed']:>12} {r['file_requests']:>9} "
              f"{r['range_resumes']:>8} {r['mb_served']:>10}")
        if r["last_line"]:
            print(f"{'':42}   -> {r['last_line']}")
    print("\n" + json.dumps(rows))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
