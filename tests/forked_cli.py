"""`python -m fomm_doctor ARGS` for the tests, in a process forked from one that has already imported torch.

Why: the suite runs the CLI about a hundred times in processes that import torch, and on 2 cores that import
(about 2 s of CPU) was a tenth of the run. Each command still runs in a process of its own, with its own argv,
environment, working folder, stdin (empty), stdout and stderr (files read back) and exit status, and still
imports every module of ours itself: only torch and numpy are already loaded, as the server loaded them.

Where a fresh interpreter could differ from the fork, the command runs in a fresh interpreter instead: when the
environment differs from the server's in a variable read when Python or torch start (PYTHON*, locale, OpenMP and
BLAS threads, temp and home folders, library paths), and when two commands run at once. Where the test process's
own environment moved in such a variable (an import set it), a new server is started with it. FOMM_TEST_FRESH_CLI=1
runs every command in a fresh interpreter, as before."""
import json
import locale
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

# Read when the interpreter or torch start (or cached by the server's imports): a command whose environment
# differs from the server's in one of these runs in a fresh interpreter.
AT_START = ("PYTHON", "LANG", "LC_", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS", "TORCH", "PYTORCH", "CUDA",
            "HIP_", "ROCM", "DNNL_", "ONEDNN_", "LD_", "TMP", "TEMP", "HOME", "XDG_")

SERVER = Path(__file__).with_name("forked_cli_server.py")


def _starts_alike(env: dict, server_env: dict) -> bool:
    keys = {k for k in (*env, *server_env) if k.startswith(AT_START)}
    return all(env.get(k) == server_env.get(k) for k in keys)


class ForkedCli:
    """One server per test process, started on first use with the process's environment of the moment; None of
    it on a platform without fork."""

    RESTARTS = 3  # new servers for a test process whose own environment moved (an import set a variable)

    def __init__(self):
        self._lock = threading.Lock()
        self._server = None
        self._env = None
        self._restarts = 0

    def _start(self):
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait()
        self._env = dict(os.environ)
        self._server = subprocess.Popen([sys.executable, str(SERVER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=self._env)

    def _ready_for(self, env: dict) -> bool:
        """A server whose start matches env's, started again if the test process's own environment has moved
        since (a bounded number of times); False where env asks for a start of its own."""
        if self._server is None or self._server.poll() is not None:
            self._start()
        if _starts_alike(env, self._env):
            return True
        if not _starts_alike(env, os.environ) or self._restarts >= self.RESTARTS:
            return False
        moved = sorted(k for k in {*self._env, *os.environ} if k.startswith(AT_START)
                       and self._env.get(k) != os.environ.get(k))
        warnings.warn(f"the test process's environment changed ({', '.join(moved)}): a new CLI server")
        self._restarts += 1
        self._start()
        return True

    def _reply(self, timeout) -> dict:
        import select
        ready, _, _ = select.select([self._server.stdout], [], [], timeout)
        if not ready:
            return {}
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError("the forked-CLI server ended")
        return json.loads(line)

    def run(self, args: list, env: dict, timeout: float, cwd) -> "subprocess.CompletedProcess | None":
        """The command's CompletedProcess, or None where it must run in a fresh interpreter."""
        if not hasattr(os, "fork") or os.environ.get("FOMM_TEST_FRESH_CLI") or not self._lock.acquire(blocking=False):
            return None
        try:
            return self._run(args, env, timeout, cwd) if self._ready_for(env) else None
        finally:
            self._lock.release()

    def _run(self, args, env, timeout, cwd):
        with tempfile.TemporaryDirectory(prefix="fomm-cli-") as folder:
            out, err = Path(folder, "out"), Path(folder, "err")
            request = {"args": args, "env": env, "cwd": str(cwd or os.getcwd()), "out": str(out), "err": str(err)}
            self._server.stdin.write((json.dumps(request) + "\n").encode())
            self._server.stdin.flush()
            pid = self._reply(60)["pid"]
            done = self._reply(timeout)
            if not done:
                os.kill(pid, 9)
                self._reply(None)
                raise subprocess.TimeoutExpired([sys.executable, "-m", "fomm_doctor", *args], timeout)
            return subprocess.CompletedProcess([sys.executable, "-m", "fomm_doctor", *args], done["status"],
                                               _text(out), _text(err))


def _text(path: Path) -> str:
    """What subprocess.run(text=True) makes of the same bytes: the locale's encoding, newlines made \\n."""
    data = path.read_bytes() if path.exists() else b""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")
