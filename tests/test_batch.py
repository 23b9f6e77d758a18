"""`fomm-doctor batch` end to end: 40 real jobs (the bundled model, clips encoded here, three of them damaged) on
local worker processes and on a Ray cluster joined by its address, a rerun, a killed run, Ctrl-C, a worker that dies."""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow(130)  # seconds on 2 cores: run among the first (conftest.py)

from conftest import make_clip, run_cli

FRAMES = 6
GOOD_JOBS = 37
DAMAGED = ("random.mp4", "cut.mp4", "page.mp4")
PORTRAIT = Path(__file__).parent / "data" / "faces" / "astronaut_portrait.jpg"


def _photos(folder: Path) -> list:
    """Four photos of the kinds people give: a real portrait, a PNG with alpha, a grey JPEG, a wide one."""
    rng = np.random.RandomState(7)
    out = [folder / "portrait.jpg"]
    out[0].write_bytes(PORTRAIT.read_bytes())
    Image.fromarray((rng.rand(90, 90, 4) * 255).astype("uint8"), "RGBA").save(folder / "alpha.png")
    Image.fromarray((rng.rand(70, 70) * 255).astype("uint8"), "L").save(folder / "grey.jpg")
    Image.fromarray((rng.rand(60, 140, 3) * 255).astype("uint8")).save(folder / "wide.png")
    return out + [folder / "alpha.png", folder / "grey.jpg", folder / "wide.png"]


def _clips(folder: Path, ffmpeg: str) -> list:
    """Nine good clips (sizes, rates, with and without audio) and the three damaged ones."""
    good = []
    for i in range(9):
        size = ((96, 64), (64, 64), (80, 120))[i % 3]
        good.append(make_clip(folder / f"clip{i}.mp4", frames=FRAMES, size=size, fps=(25, 30, 24)[i % 3],
                              audio=i % 2 == 0, ffmpeg=ffmpeg))
    (folder / "random.mp4").write_bytes(np.random.RandomState(1).bytes(4096))
    whole = make_clip(folder / "whole.mp4", frames=FRAMES, ffmpeg=ffmpeg)  # index at the end: a cut loses it
    (folder / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    (folder / "page.mp4").write_text("<!DOCTYPE html><html><body>Quota exceeded</body></html>")
    return good


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A jobs file of 40 rows: 37 good jobs and one for each damaged clip, paths relative to the file."""
    import imageio_ffmpeg
    root = tmp_path_factory.mktemp("batch")
    (root / "photos").mkdir()
    (root / "clips").mkdir()
    photos, clips = _photos(root / "photos"), _clips(root / "clips", imageio_ffmpeg.get_ffmpeg_exe())
    rows = [{"source": f"photos/{photos[i % 4].name}", "driving": f"clips/{clips[i % 9].name}",
             "output": f"job{i:02d}.mp4", "crop": "no", "audio": ""} for i in range(GOOD_JOBS)]
    rows += [{"source": "photos/portrait.jpg", "driving": f"clips/{name}", "output": f"bad-{name}", "crop": "",
              "audio": "yes"} for name in DAMAGED]
    for name, chosen in (("jobs.csv", rows), ("jobs16.csv", rows[:13] + rows[GOOD_JOBS:])):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen)
    return root


def batch_args(media: Path, out: Path, *more, jobs: str = "jobs.csv") -> list:
    return ["batch", str(media / jobs), "-o", str(out), "--checkpoint", "synth-64", "--json", *more]


def _summary(proc) -> dict:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def manifest(out: Path, torn: str = "") -> list:
    """The manifest's records; every line must be one, but for a `torn` one the test wrote itself."""
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if not torn or line != torn]


def no_partial_files(out: Path) -> list:
    return [p.name for p in out.rglob("*") if ".partial-" in p.name]


def check_outputs(media: Path, out: Path) -> dict:
    """Every good job's video is there, whole, as the manifest says, with the clip's frames and audio."""
    from fomm_core.media.video import iter_frames, probe_video
    from fomm_doctor.net.digests import file_sha256
    done = {r["job"]: r for r in manifest(out) if r["status"] == "done"}
    assert sorted(done) == [f"job{i:02d}.mp4" for i in range(GOOD_JOBS)]
    for name, record in done.items():
        path = out / name
        assert file_sha256(path) == record["sha256"]
        clip = probe_video(record["driving"])
        assert sum(1 for _ in iter_frames(path)) == FRAMES == record["frames"]
        assert probe_video(path).has_audio == clip.has_audio
    assert not no_partial_files(out)
    return {name: r["sha256"] for name, r in done.items()}


def check_failures(summary: dict, out: Path) -> None:
    """The three damaged clips failed with a sentence naming the file; no video was written for them."""
    failures = {f["job"]: f for f in summary["failures"]}
    assert sorted(failures) == sorted(f"bad-{name}" for name in DAMAGED)
    for name in DAMAGED:
        failure = failures[f"bad-{name}"]
        assert failure["status"] == "failed" and name in failure["error"] and "\n" not in failure["error"]
        assert failure["where"].startswith("row ")
        assert not (out / f"bad-{name}").exists()


@pytest.fixture(scope="module")
def local_run(media):
    out = media / "out-local"
    proc = run_cli(*batch_args(media, out, "--workers", "2"), timeout=600)
    return out, proc


def test_forty_jobs_on_local_workers(media, local_run):
    out, proc = local_run
    assert proc.returncode == 1, proc.stderr[-2000:]  # a job failed: the exit code says so
    summary = _summary(proc)
    assert (summary["done"], summary["failed"], summary["errors"], summary["skipped"]) == (GOOD_JOBS, 3, 0, 0)
    assert summary["ran"] == 40 and summary["jobs_per_second"] > 0
    check_outputs(media, out)
    check_failures(summary, out)
    assert len(manifest(out)) == 40
    workers = {r["worker"] for r in manifest(out)}
    assert len(workers) == 2 and all("torch" in w for w in workers)  # both processes took jobs


def test_a_rerun_does_nothing(media, local_run):
    out, _ = local_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    lines = len(manifest(out))
    proc = run_cli(*batch_args(media, out, "--workers", "2"), timeout=600)
    summary = _summary(proc)
    assert (summary["done"], summary["skipped"], summary["ran"]) == (0, GOOD_JOBS, 0)
    assert summary["failed"] == 3 and proc.returncode == 1  # the damaged clips have not changed: still failed
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == before
    assert len(manifest(out)) == lines


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The address of a Ray cluster's head, started as one is (`ray start --head`), that the module's later Ray
    runs join (`--ray HOST:PORT`): one start for them all, where each `--ray local` run starts and stops its own
    (3 to 6 s). The cluster asks for Ray's token, which a driver sends only with RAY_AUTH_MODE=token: set here as
    a user joining one sets it. `ray start` with that mode needs a token it can find (Ray 2.60 refuses to start
    without one; it never makes one), so the cluster gets its own, in RAY_AUTH_TOKEN for the head and every
    driver: nothing is read from or left in ~/.ray, and no earlier run's token decides whether this one starts."""
    pytest.importorskip("ray", reason="Ray is in the [test] extra: pip install '.[test]'")
    import secrets
    import socket
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "token")
    mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))  # the form `ray get-auth-token --generate` writes
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    with log.open("w") as sink:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                                 f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                                 "--disable-usage-stats"], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:  # also when the head never answered: nothing of it outlives the module
        try:
            os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started: its own process group
        except ProcessLookupError:  # it ended by itself (its log says why, in the assertion above)
            pass
        head.wait(30)
        mp.undo()


def test_forty_jobs_on_ray_give_the_same_files(media, local_run, ray_head):
    out = media / "out-ray"
    # on the module's cluster, joined by its address (`--ray local`, which starts and stops a private instance:
    # test_batch_hostile.py)
    proc = run_cli(*batch_args(media, out, "--ray", ray_head, "--workers", "2", "--threads", "1"), timeout=600)
    summary = _summary(proc)
    assert proc.returncode == 1 and (summary["done"], summary["failed"]) == (GOOD_JOBS, 3), proc.stderr[-2000:]
    assert summary["backend"].startswith("Ray, 2 actors")
    ray_files = check_outputs(media, out)
    check_failures(summary, out)
    # deterministic: the exact path gives byte-identical videos in other processes and through Ray's transport
    assert ray_files == check_outputs(media, local_run[0])
    # the same folder again: every job is found done
    again = _summary(run_cli(*batch_args(media, out, "--ray", ray_head, "--workers", "2"), timeout=600))
    assert (again["done"], again["skipped"], again["ran"], again["failed"]) == (0, GOOD_JOBS, 0, 3)


# A terminal's shell starts a foreground job with Ctrl-C's signal at its default and unblocked, whatever the shell
# itself inherited; a test process need not have it so (a run started in the background by a script ignores
# SIGINT, and a child inherits an ignored signal across exec). So the driver is started as the shell would.
FOREGROUND = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
              "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
              "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def _start(args) -> subprocess.Popen:
    """The batch as a terminal starts it: in its own process group, Ctrl-C's signal at its default."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", FOREGROUND, "-m", "fomm_doctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _signals(pid: int) -> str:
    """The process's ignored, blocked and caught signal masks (Linux), for a failure's message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "gone"
    return " ".join(line.replace("\t", "") for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def _wait_for_lines(out: Path, n: int, proc, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        path = out / "manifest.jsonl"
        if path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= n:
            return
        assert proc.poll() is None, "the batch ended before it could be stopped"
        time.sleep(0.05)
    raise AssertionError(f"no {n} manifest lines within {limit} s")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _backend(name: str, request) -> list:
    """The options of a backend: local worker processes, or Ray (the module's cluster, joined by address)."""
    if name == "local":
        return ["--workers", "2"]
    return ["--ray", request.getfixturevalue("ray_head"), "--workers", "2"]


@pytest.mark.parametrize("name", ["local", "ray"])
def test_a_killed_run_resumes(media, name, request):
    backend = _backend(name, request)
    out = media / f"out-killed-{name}"
    proc = _start(batch_args(media, out, *backend))
    _wait_for_lines(out, 10, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies at once, with no chance to clean up
    proc.wait(30)
    before = manifest(out)
    pids = {int(r["worker"].split(" pid ")[1].split(",")[0]) for r in before}
    deadline = time.monotonic() + 30
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(map(_gone, pids)), "a worker outlived its killed driver"
    proc = run_cli(*batch_args(media, out, *backend), timeout=600)
    summary = _summary(proc)
    finished_before = sum(r["status"] == "done" for r in before)
    assert summary["skipped"] == finished_before and summary["done"] == GOOD_JOBS - finished_before
    check_outputs(media, out)
    check_failures(summary, out)
    import tempfile
    left = [p.name for pid in pids for p in Path(tempfile.gettempdir()).glob(f"fomm-batch-{pid}-*")]
    assert not left, "a killed actor's scratch folder was not swept by the next run"


@pytest.mark.skipif(sys.platform == "win32", reason="a process group's SIGINT is how a POSIX terminal sends Ctrl-C")
@pytest.mark.parametrize("name", ["local", "ray"])
def test_ctrl_c_leaves_no_partial_video_and_the_rerun_finishes(media, name, request):
    """16 of the jobs (13 good): Ctrl-C once some are done, then the same command finishes the rest."""
    backend = _backend(name, request)
    out = media / f"out-interrupted-{name}"
    proc = _start(batch_args(media, out, *backend, jobs="jobs16.csv"))
    _wait_for_lines(out, 4, proc)
    masks = _signals(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole foreground group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, (masks, stderr[-2000:])
    assert not no_partial_files(out)
    done = [r for r in manifest(out) if r["status"] == "done"]
    assert 4 <= len(manifest(out)) < 16
    proc = run_cli(*batch_args(media, out, *backend, jobs="jobs16.csv"), timeout=600)
    summary = _summary(proc)
    assert summary["skipped"] == len(done) and summary["done"] + summary["skipped"] == 13
    assert summary["failed"] == 3 and not no_partial_files(out)


def test_a_second_batch_into_the_same_folder_is_refused(media, tmp_path):
    from fomm_doctor.batch.run import hold
    out = tmp_path / "busy"
    with hold(out):
        proc = run_cli(*batch_args(media, out))
    assert proc.returncode == 2 and "another batch is writing to" in proc.stderr and str(os.getpid()) in proc.stderr
    assert not (out / "manifest.jsonl").exists()


def test_a_changed_input_or_a_damaged_output_is_done_again(media, local_run, tmp_path):
    """Done means done with these inputs, and still the recorded file: touch a photo, spoil a video, run again."""
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(media / "photos", root / "photos")
    shutil.copytree(media / "clips", root / "clips")
    rows = "source,driving,output\nphotos/grey.jpg,clips/clip1.mp4,a.mp4\nphotos/wide.png,clips/clip2.mp4,b.mp4\n" \
           "photos/alpha.png,clips/clip3.mp4,c.mp4\n"
    (root / "jobs.csv").write_text(rows)
    out = root / "out"
    assert _summary(run_cli(*batch_args(root, out)))["done"] == 3
    stamp = (root / "photos" / "grey.jpg").stat().st_mtime_ns + 5_000_000_000
    os.utime(root / "photos" / "grey.jpg", ns=(stamp, stamp))
    with open(out / "b.mp4", "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    torn = '{"job": "c.mp4", "status": "do'  # a line torn by a kill
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as f:
        f.write(torn)
    summary = _summary(run_cli(*batch_args(root, out)))
    assert (summary["done"], summary["skipped"]) == (2, 1)
    assert {r["job"] for r in manifest(out, torn)[-2:]} == {"a.mp4", "b.mp4"}


def test_a_worker_that_dies_costs_its_job_only(media, tmp_path):
    """SIGKILL a worker in the middle of a long job: that job is an `error`, a new worker does the next."""
    import threading
    from fomm_doctor.batch.jobs import Job
    from fomm_doctor.batch.local import LocalPool
    from fomm_doctor.batch.worker import RunSettings, Task
    from fomm_doctor.checkpoints import resolve_checkpoint
    import imageio_ffmpeg
    long_clip = make_clip(tmp_path / "long.mp4", frames=400, size=(64, 64), ffmpeg=imageio_ffmpeg.get_ffmpeg_exe())
    checkpoint = str(resolve_checkpoint("synth-64").path)
    photo = media / "photos" / "grey.jpg"
    tasks = [(0, Task(Job(photo, long_clip, "long.mp4"), tmp_path / "long-out.mp4", checkpoint, None, "k0")),
             (1, Task(Job(photo, media / "clips" / "clip0.mp4", "short.mp4"), tmp_path / "short.mp4", checkpoint,
                      None, "k1"))]
    results = {}

    def kill_the_writer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            partial = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
            if partial:
                os.kill(int(partial[0].name.split(".partial-")[1].split(".")[0]), signal.SIGKILL)
                return
            time.sleep(0.01)
    killer = threading.Thread(target=kill_the_writer)
    killer.start()
    LocalPool(1, RunSettings(threads=1)).run(tasks, lambda i, task, outcome: results.__setitem__(i, outcome))
    killer.join()
    assert results[0].status == "error" and "worker process stopped (signal 9)" in results[0].error
    assert results[1].status == "done" and (tmp_path / "short.mp4").is_file()
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_worker_whose_driver_alone_is_killed_stops_by_itself(tmp_path):
    """SIGKILL the driver only (not its process group): its idle worker sees the driver gone and ends."""
    code = textwrap.dedent("""
        import time
        from fomm_doctor.batch.local import worker_context, worker_main
        from fomm_doctor.batch.worker import RunSettings
        if __name__ == "__main__":   # a worker imports the driver's main module as it starts
            ctx = worker_context()
            tasks, results = ctx.Queue(), ctx.Queue()   # kept: a queue the driver drops is gone for the worker too
            worker = ctx.Process(target=worker_main, args=(0, tasks, results, RunSettings(threads=1)))
            worker.start()
            print(worker.pid, flush=True)
            time.sleep(300)
    """)
    (tmp_path / "driver.py").write_text(code)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(driver.stdout.readline())
        time.sleep(3)
        assert not _gone(worker), "the worker did not start"   # waiting for its first task
    finally:
        driver.kill()
        driver.wait(30)
    deadline = time.monotonic() + 60
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    outlived = not _gone(worker)
    if outlived:
        os.kill(worker, signal.SIGKILL)
    assert not outlived, "a worker outlived its killed driver"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are spawned off Linux (batch/local.py)")
def test_a_worker_starts_with_torch_already_imported_and_a_second_starts_with_no_import():
    """Local workers are forks of a fork server that imported torch once: a worker finds torch loaded before it
    imports anything, and so does the next one, without the server importing it again."""
    from fomm_doctor.batch.local import worker_context
    ctx = worker_context()
    assert ctx.get_start_method() == "forkserver"
    said = ctx.Queue()
    code = "import os, sys, time; q.put(('torch' in sys.modules and time.process_time() < 0.5, os.getppid()))"
    seen = []
    for _ in range(2):
        worker = ctx.Process(target=exec, args=(code, {"q": said}))
        worker.start()
        seen.append(said.get(timeout=120))
        worker.join(30)
        assert worker.exitcode == 0
    assert all(loaded for loaded, _ in seen), seen          # imported before the worker ran a line of its own
    assert seen[0][1] == seen[1][1] != os.getpid()           # both forked by the same server, not by us


def test_ray_asked_for_but_not_installed_is_one_sentence(media, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # what `import ray` meets where Ray is not installed
            "from fomm_doctor.cli import main; main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, *batch_args(media, tmp_path / "out", "--ray", "auto")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert 'needs Ray, which is not installed here: pip install "fomm-doctor[ray]"' in proc.stderr
    assert not (tmp_path / "out").exists()
