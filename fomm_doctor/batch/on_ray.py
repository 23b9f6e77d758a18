"""Jobs on a Ray cluster (`--ray auto|local|ADDRESS`, the optional extra `fomm-doctor[ray]`).

One actor per worker, each a JobRunner with its models loaded, asking Ray for a GPU when jobs run on CUDA. The
nodes need fomm-doctor and torch installed, nothing else: no shared folder.
- Checkpoints travel once: the driver puts each file in Ray's object store, and the first actor on a node that
  needs it stores it by sha256 in a private folder of the user's cache there (0700, ours, never through a link;
  files 0600), where the node's other actors (and later batches) find it. A shared temp folder is not used: another
  user could create it first.
- A job's photo and video travel with it (each file put once, however many jobs read it), and the finished
  video comes back as bytes: the driver is the only writer of the output folder and the manifest, so its
  guarantees (files appear whole, Ctrl-C leaves nothing half-written) hold whatever happens on the nodes.
- An actor that dies (its node lost, out of memory) costs its job an `error` record, and a new actor takes over.
- Joining a cluster trusts it: the results its nodes send are unpickled here (code they choose runs on this
  machine), and this batch's code runs on its nodes. An address is probed first (it must answer as gRPC, which
  Ray speaks), and joining gives up after --ray-timeout seconds instead of waiting for ever.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Optional

from fomm_core.cache import user_cache_dir
from fomm_core.errors import FommError
from fomm_core.private import create_new, private_dir
from fomm_doctor.batch.manifest import DONE, ERROR
from fomm_doctor.batch.worker import WORKER_MEMORY, JobRunner, Outcome, RunSettings, Task, set_threads
from fomm_doctor.errors import ExitCode, UserError
from fomm_doctor.net.digests import file_sha256

INSTALL_HINT = "pip install \"fomm-doctor[ray]\""
CONNECT_SECONDS = 5.0  # for the head of a cluster to accept a connection
JOIN_SECONDS = 30.0    # for Ray to join a cluster that answered (--ray-timeout)
# what an HTTP/2 (gRPC) client sends first; a server answers with a SETTINGS frame (type 4)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
CLOSE_SECONDS = 10.0  # for the actors to remove their scratch folders at the end
SCRATCH = "fomm-batch-"             # an actor's folder in the node's temp folder: fomm-batch-PID-xxxx
SHIPPED = "shipped"                 # the node's copies of shipped checkpoints, by sha256, in the user's cache


def import_ray():
    """The ray module, or a sentence saying how to get it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed here: {INSTALL_HINT}.") from None
    return ray


def connect(ray, address: str, timeout: float = JOIN_SECONDS) -> bool:
    """Join the cluster at `address`; True when this call started a Ray instance of its own (stopped at the end).

    'local' starts a private instance on this machine (on 127.0.0.1); 'auto' joins the cluster this machine is
    part of (`ray start`, or RAY_ADDRESS) and starts a local one where there is none; anything else is an
    address such as 10.0.0.5:6379 or ray://head:10001. Ray waits for ever for a head that accepts and never
    answers: after `timeout` seconds this gives up with a sentence.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report to Ray's servers unless the user wants one
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address == "local":
        options.update(address="local", _node_ip_address="127.0.0.1")
    else:
        options.update(address=None if address == "auto" else address)
    mine = address == "local" or (address == "auto" and not os.environ.get("RAY_ADDRESS"))
    if address in ("local", "auto"):  # this machine's own: Ray sets its signal handlers from the main thread only
        _init(ray, options, address)
        return mine
    outcome: list = []

    def join():
        try:
            ray.init(**options)
            outcome.append(None)
        except BaseException as err:  # handed to the caller's thread
            outcome.append(err)
    thread = threading.Thread(target=join, daemon=True, name="ray-join")
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise UserError(f"Ray did not join the cluster at '{address}' within {timeout:g} s (is it a Ray head, and "
                        "the same Ray version?); check the address, or wait longer with --ray-timeout.",
                        ExitCode.NETWORK)
    if outcome[0] is not None:
        _init(ray, options, address, outcome[0])
    return False


def _init(ray, options: dict, address: str, failed: Optional[BaseException] = None) -> None:
    """ray.init(**options), or raise what it raised (`failed`, from another thread): Ray's refusals as a sentence."""
    try:
        if failed is not None:
            raise failed
        ray.init(**options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        raise UserError(f"could not join the Ray cluster at '{address}': {str(err).splitlines()[0][:200]}",
                        ExitCode.NETWORK) from None


def host_and_port(address: str) -> tuple:
    """('10.0.0.5', 6379) from '10.0.0.5:6379' or 'ray://head:10001' (Ray's default port when none is given)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host:
        return rest.rstrip("/"), 10001 if address.startswith("ray://") else 6379
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray {address}: the port must be a number (head:6379 or ray://head:10001).")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Refuse in seconds an address nothing answers at, or one that answers but not as gRPC (a web server, a port
    that accepts and stays silent): Ray itself waits minutes, or for ever, for such a head."""
    host, port = host_and_port(address)
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        raise UserError(f"nothing answers at {host}:{port} ({err.strerror or err}); start the cluster's head with "
                        "`ray start --head` there, or check the address.", ExitCode.NETWORK) from None
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
        conn.close()
        return  # a TLS head answers a plain preface with nothing useful: Ray's own bounded join decides
    try:
        with conn:
            conn.sendall(H2_PREFACE)
            first = _read_up_to(conn, 9)
    except (socket.timeout, TimeoutError):
        raise UserError(f"{host}:{port} accepts connections but said nothing for {timeout:g} s: not the head of a "
                        "Ray cluster; check the address.", ExitCode.NETWORK) from None
    except OSError as err:
        raise UserError(f"{host}:{port} closed the connection ({err.strerror or err}): not the head of a Ray "
                        "cluster; check the address.", ExitCode.NETWORK) from None
    if len(first) < 9 or first[3] != 4:
        raise UserError(f"{host}:{port} answers, but not as a Ray cluster's head does (gRPC); it may be another "
                        "service: check the address and port.", ExitCode.NETWORK)


def _read_up_to(conn, count: int) -> bytes:
    data = b""
    while len(data) < count:
        more = conn.recv(count - len(data))
        if not more:
            break
        data += more
    return data


def wants_gpu(device: str, cluster: dict) -> bool:
    """Whether each actor asks Ray for a GPU: cuda asked, or auto on a cluster that has GPUs."""
    gpus = cluster.get("GPU", 0)
    if device.startswith("cuda") and not gpus:
        raise UserError(f"--device {device} asks for a GPU, but the Ray cluster has none; use --device cpu or auto.")
    return device.startswith("cuda") or (device == "auto" and gpus > 0)


def fit_workers(cluster: dict, gpu: bool, threads: int) -> int:
    """As many actors as the cluster holds: one per GPU, else one per `threads` CPUs, as far as its memory goes
    (Ray places them by the memory each reserves, so a node is never packed past it)."""
    if gpu:
        return max(1, int(cluster.get("GPU", 0)))
    cpus = int(cluster.get("CPU", 1)) // max(1, threads)
    memory = int(cluster.get("memory", 0)) // WORKER_MEMORY if cluster.get("memory") else cpus
    return max(1, min(cpus, memory))


class RayWorker:
    """A Ray actor: a JobRunner with a scratch folder for its job's files; the shipped checkpoints are kept in a
    cache shared by the node's actors (and by later batches: a file already there is not fetched again)."""

    def __init__(self, settings: RunSettings, shipped: dict):
        set_threads(settings.threads)
        self.runner = JobRunner(settings)
        self.shipped = shipped            # {driver's path: [object ref, sha256]}: in a list, Ray does not fetch it now
        self.local: dict[str, str] = {}
        _sweep_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-"))

    def _fetch(self, path: Optional[str]) -> Optional[str]:
        """The node's copy of a shipped file (a checkpoint or config), fetched once; other values pass through."""
        if path is None or path not in self.shipped:
            return path
        if path not in self.local:
            ref, digest = self.shipped[path]
            local = node_copy(digest, Path(path).name)
            if local is None:
                import ray
                local = keep_copy(digest, Path(path).name, ray.get(ref))
            self.local[path] = str(local)
        return self.local[path]

    def run(self, task: Task, source: Optional[bytes], driving: Optional[bytes]):
        """-> (Outcome, the video's bytes or None). Inputs missing on the driver come as None, and the job's
        own check reports them under their real names."""
        job, here = task.job, self.scratch / "job"
        shutil.rmtree(here, ignore_errors=True)
        try:
            src = _drop(here / "source", job.source, source)
            drv = _drop(here / "driving", job.driving, driving)
            out = here / "out" / Path(task.output).name
            out.parent.mkdir(parents=True)
            try:
                local = replace(task, job=replace(job, source=src, driving=drv), output=out,
                                checkpoint=self._fetch(task.checkpoint), config=self._fetch(task.config))
            except (FommError, OSError) as err:  # the node's cache folder: someone else's, a link, a full disk
                return Outcome(ERROR, error=f"this node could not keep the checkpoint: {_first(err)}; it is tried "
                                            "again on a rerun.", worker=socket.gethostname()), None
            outcome = self.runner.run(local)
            names = {str(src): str(job.source), str(drv): str(job.driving), str(out): str(task.output)}
            outcome.error = _rename(outcome.error, names)
            outcome.notes = [_rename(n, names) for n in outcome.notes]
            return outcome, (out.read_bytes() if outcome.status == DONE else None)
        finally:
            shutil.rmtree(here, ignore_errors=True)

    def close(self) -> None:
        """Remove the scratch folder; the driver calls it before the end."""
        shutil.rmtree(self.scratch, ignore_errors=True)


def _sweep_scratch() -> None:
    """Remove the scratch folders of actors that are gone (killed with their batch, so they could not)."""
    if sys.platform == "win32":
        return  # os.kill(pid, 0) is not a liveness test there; the OS's temp cleaning does it
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*-*"):
        pid = folder.name[len(SCRATCH):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def _drop(folder: Path, original: Path, data: Optional[bytes]) -> Path:
    if data is None:
        return original
    folder.mkdir(parents=True)
    path = folder / original.name
    path.write_bytes(data)
    return path


def _rename(text: str, names: dict) -> str:
    for local, original in names.items():
        text = text.replace(local, original)
    return text


def node_cache(digest: str) -> Path:
    """This user's folder for a shipped file on this node: private (0700, ours, not a link), else FommError."""
    return private_dir(user_cache_dir("batch", SHIPPED, digest))


def node_copy(digest: str, name: str) -> Optional[Path]:
    """The node's copy of a shipped file when it is there whole (a plain file with that sha256), else None."""
    local = node_cache(digest) / name
    try:
        plain = stat.S_ISREG(os.lstat(local).st_mode)
    except OSError:
        return None
    return local if plain and file_sha256(local) == digest else None


def keep_copy(digest: str, name: str, data: bytes) -> Path:
    """Keep a shipped file on this node, 0600 (a checkpoint may be private), whole or not at all."""
    local = node_cache(digest) / name
    place(local, data, mode=0o600)
    return local


def place(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write a file beside its name and rename it into place: never half a file at `path`, and never written
    through a link (one at the temporary name is removed, one at `path` is replaced). `mode` before the umask."""
    from fomm_core.media.video import temp_path_for
    tmp = temp_path_for(path)
    try:
        fd = create_new(tmp, mode)
    except FileExistsError:
        tmp.unlink()  # a killed run's leftover, or a planted name: removed, not written through
        fd = create_new(tmp, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RayPool:
    """run(tasks, on_result) as LocalPool does, with Ray actors for workers."""

    def __init__(self, address: str, workers: int, settings: RunSettings, timeout: float = JOIN_SECONDS):
        self.address, self.workers, self.settings, self.timeout = address, workers, settings, timeout
        self.ray = import_ray()
        if address not in ("auto", "local"):
            check_reachable(address, min(CONNECT_SECONDS, timeout))
        self.started = False
        self.actors: list = []
        self.described = ""

    def run(self, tasks: Iterable[tuple[int, Task]], on_result: Callable[[int, Task, Outcome], None]) -> None:
        ray = self.ray
        todo = deque(tasks)
        self.started = connect(ray, self.address, self.timeout)
        try:
            cluster = ray.cluster_resources()
            gpu = wants_gpu(self.settings.device, cluster)
            threads = self.settings.threads
            count = min(self.workers or fit_workers(cluster, gpu, threads), max(1, len(todo)))
            self.described = (f"Ray, {count} actor{'s' * (count != 1)} on {len(ray.nodes())} node(s) "
                              f"({int(cluster.get('CPU', 0))} CPUs, {int(cluster.get('GPU', 0))} GPUs)")
            shipped = self._ship(todo)
            actor = ray.remote(RayWorker).options(num_cpus=threads, num_gpus=1 if gpu else 0, max_restarts=0,
                                                  memory=WORKER_MEMORY)
            self._make = lambda: actor.remote(replace(self.settings, threads=threads), shipped)
            self.actors = [self._make() for _ in range(count)]
            self._feed(todo, on_result)
        finally:
            self.stop()

    def _ship(self, todo) -> dict:
        """Each checkpoint and config file the tasks name, put in the object store once, with its sha256."""
        files = {t.checkpoint for _, t in todo} | {t.config for _, t in todo if t.config and Path(t.config).is_file()}
        shipped = {}
        for path in sorted(files):
            data = Path(path).read_bytes()
            shipped[path] = [self.ray.put(data), hashlib.sha256(data).hexdigest()]
        return shipped

    def _feed(self, todo: deque, on_result) -> None:
        ray = self.ray
        uses = Counter(p for _, t in todo for p in (t.job.source, t.job.driving))
        refs: dict = {}
        idle, inflight = deque(self.actors), {}
        while todo or inflight:
            while idle and todo:
                task_id, task = todo.popleft()
                actor = idle.popleft()
                args = [self._input(p, refs, uses) for p in (task.job.source, task.job.driving)]
                inflight[actor.run.remote(task, *args)] = (actor, task_id, task)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            actor, task_id, task = inflight.pop(ready[0])
            outcome, actor = self._receive(ready[0], actor, task)
            idle.append(actor)
            on_result(task_id, task, outcome)

    def _input(self, path: Path, refs: dict, uses: Counter):
        """The object ref of an input file (put on its first use, forgotten after its last), or None when the
        driver cannot read it (the job's check then says why)."""
        uses[path] -= 1
        ref = refs.get(path)
        if ref is None:
            try:
                ref = self.ray.put(path.read_bytes()) if path.is_file() else None
            except OSError:
                ref = None
        if uses[path] > 0:
            refs[path] = ref
        else:
            refs.pop(path, None)
        return ref

    def _receive(self, ref, actor, task: Task):
        """(Outcome, the actor to use next): the video placed in the output folder, or the failure recorded."""
        ray = self.ray
        try:
            outcome, data = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            ray.kill(actor)
            return Outcome(ERROR, error=f"the Ray worker stopped during this job ({_first(err)}); it is tried "
                                        "again on a rerun."), self._make()
        except ray.exceptions.RayError as err:
            return Outcome(ERROR, error=f"Ray could not run this job: {_first(err)}"), actor
        if data is not None:
            if hashlib.sha256(data).hexdigest() != outcome.sha256:
                return Outcome(ERROR, error="the video came back from the Ray worker damaged (its sha256 differs); "
                                            "it is tried again on a rerun."), actor
            try:
                place(Path(task.output), data)
            except OSError as err:
                return Outcome(ERROR, error=f"could not write {task.output} ({err.strerror or err}); it is tried "
                                            "again on a rerun."), actor
        return outcome, actor

    def stop(self) -> None:
        """Let each actor remove its scratch folder (a few seconds at most), then end it."""
        try:
            if self.actors:
                self.ray.get([actor.close.remote() for actor in self.actors], timeout=CLOSE_SECONDS)
        except Exception:  # a dead actor or a lost node: its scratch is in its temp folder, which the OS clears
            pass
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already dead, or the cluster gone: nothing left to stop
                pass
        self.actors = []
        if self.started:
            self.ray.shutdown()
        self.started = False


def _first(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]
