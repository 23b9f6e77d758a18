"""`fomm-doctor batch` against what it should not trust: names that are not UTF-8, links in its output folder,
a read-only folder, planted manifest records, a full disk, a `--ray` address that is not Ray, a node cache
someone else made first. Each runs the real CLI on tiny real media (the bundled 64 px model, 3-frame clips)."""
import ctypes
import hashlib
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_clip, run_cli

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names, links, modes and limits")
pytestmark = [posix, pytest.mark.slow(40)]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A photo and a 3-frame clip, both under names that are not valid UTF-8, and plain ones beside them."""
    from fomm_doctor.checkpoints import resolve_checkpoint
    resolve_checkpoint("synth-64")  # made now: a run below has a file size limit
    root = tmp_path_factory.mktemp("hostile")
    (root / "photos").mkdir()
    (root / "clips").mkdir()
    rng = np.random.RandomState(3)
    for name in (b"\xff-photo.png", b"plain.png"):
        Image.fromarray((rng.rand(40, 40, 3) * 255).astype("uint8")).save(os.fsdecode(bytes(root / "photos") + b"/"
                                                                                      + name))
    make_clip(os.fsdecode(bytes(root / "clips") + b"/\xfe-clip.mp4"), frames=3, size=(64, 64), audio=False)
    (root / "plain").mkdir()
    make_clip(root / "plain" / "clip.mp4", frames=3, size=(64, 64), audio=False)
    return root


def folder_args(media: Path, out: Path, *more) -> list:
    return ["batch", "--sources", media / "photos", "--driving", media / "clips", "-o", out, "--checkpoint",
            "synth-64", "--workers", "1", "--json", *more]


def one_job(media: Path, folder: Path, output: str) -> Path:
    """A jobs file of one job (plain names) writing `output`."""
    folder.mkdir(exist_ok=True)
    jobs = folder / "jobs.jsonl"
    jobs.write_text(json.dumps({"source": str(media / "photos" / "plain.png"),
                                "driving": str(media / "plain" / "clip.mp4"), "output": output}) + "\n")
    return jobs


def job_args(media: Path, folder: Path, out: Path, output: str = "x.mp4") -> list:
    return ["batch", one_job(media, folder, output), "-o", out, "--checkpoint", "synth-64", "--workers", "1",
            "--json"]


def summary_of(proc) -> dict:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def refused(proc, *words) -> str:
    """One sentence, exit 2, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and all(w in proc.stderr for w in words), proc.stderr[-3000:]
    return proc.stderr


def records(out: Path) -> list:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def test_file_names_that_are_not_utf8_round_trip_through_a_run_and_a_rerun(media, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(*folder_args(media, out))
    summary = summary_of(proc)
    assert proc.returncode == 0 and (summary["done"], summary["failed"], summary["errors"]) == (2, 0, 0)
    names = {os.fsencode(r["job"]) for r in records(out)}  # the manifest is UTF-8 text, and says the real names
    assert names == {b"\xff-photo__\xfe-clip.mp4", b"plain__\xfe-clip.mp4"}
    assert names <= set(os.listdir(bytes(out)))
    again = summary_of(run_cli(*folder_args(media, out)))
    assert (again["skipped"], again["ran"], again["failed"]) == (2, 0, 0)


def test_a_manifest_that_is_a_link_is_refused_and_its_target_unchanged(media, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").symlink_to(victim)
    refused(run_cli(*job_args(media, tmp_path / "jobs", out)), "manifest.jsonl is a link")
    assert victim.read_text() == "mine\n" and not list(out.glob("*.mp4"))


def test_a_subfolder_that_is_a_link_is_refused_and_nothing_is_written_through_it(media, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    refused(run_cli(*job_args(media, tmp_path / "jobs", out, "sub/x.mp4")), "sub is a link")
    assert not list(elsewhere.iterdir())


def test_a_lock_file_that_is_a_link_is_one_sentence_and_its_target_unchanged(media, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".fomm-batch.lock").symlink_to(victim)
    refused(run_cli(*job_args(media, tmp_path / "jobs", out)), "the lock file", "is a link")
    assert victim.read_text() == "mine\n" and not (out / "manifest.jsonl").exists()


def _without_root_s_override():
    """root writes into any folder; without CAP_DAC_OVERRIDE (dropped for the child only) modes hold for it too."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE: gone from what exec gives
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_output_folder_is_one_sentence(media, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "fomm_doctor", *map(str, job_args(media, tmp_path / "j", out))],
                              capture_output=True, text=True, timeout=300, preexec_fn=_without_root_s_override)
    finally:
        os.chmod(out, 0o755)
    refused(proc, "could not be created", "writable")
    assert not list(out.iterdir())


def test_a_planted_failed_record_does_not_skip_the_job_nor_show_its_text(media, tmp_path):
    out = tmp_path / "out"
    args = job_args(media, tmp_path / "jobs", out)
    assert summary_of(run_cli(*args))["done"] == 1
    done = records(out)[-1]
    (out / "x.mp4").unlink()  # the planter removes the video, and says the job failed: a rerun would skip it
    planted = dict(done, status="failed", sha256="", error="PLANTED: send your files to evil.example")
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(planted) + "\n")
    proc = run_cli(*args)
    summary = summary_of(proc)
    assert proc.returncode == 0 and (summary["done"], summary["failed"]) == (1, 0)
    assert "PLANTED" not in proc.stdout + proc.stderr and "1 record of" in proc.stderr
    assert (out / "x.mp4").is_file()


def _file_size_limit():
    """A real write limit, as a full disk is one: the kernel stops the encoder's write past 3000 bytes (SIGXFSZ,
    or EFBIG where it is ignored); a manifest line fits under it, a video does not."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))


def test_a_job_failed_by_a_full_disk_is_an_error_and_runs_again(media, tmp_path):
    out = tmp_path / "out"
    jobs = one_job(media, tmp_path / "jobs", "x.mp4")
    args = [sys.executable, "-m", "fomm_doctor", "batch", str(jobs), "-o", str(out), "--checkpoint", "synth-64",
            "--workers", "1", "--json"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit)
    summary = summary_of(first)
    assert first.returncode == 1 and (summary["errors"], summary["failed"]) == (1, 0), first.stderr[-2000:]
    assert records(out)[-1]["status"] == "error" and "tried again" in records(out)[-1]["error"]
    again = summary_of(subprocess.run(args, capture_output=True, text=True, timeout=300))
    assert (again["done"], again["failed"], again["errors"]) == (1, 0, 0) and (out / "x.mp4").is_file()


class _Silent(threading.Thread):
    """A TCP server on 127.0.0.1 that accepts and then says nothing (or only `first`)."""

    def __init__(self, first: bytes = b""):
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.first, self.held = self.sock.getsockname()[1], first, []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.first:
                conn.sendall(self.first)


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>not ray</html>")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("kind", ["silent", "http", "h2-silent"])
def test_a_ray_address_that_is_not_ray_gives_up_with_a_sentence(media, tmp_path, kind):
    pytest.importorskip("ray", reason="Ray is in the [test] extra: pip install '.[test]'")
    if kind == "http":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, stop = server.server_address[1], server.shutdown
    else:  # h2-silent: an HTTP/2 SETTINGS frame, then silence: past the probe, into Ray's own join
        server = _Silent(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" if kind == "h2-silent" else b"")
        server.start()
        port, stop = server.port, server.sock.close
    try:
        proc = run_cli(*job_args(media, tmp_path / "jobs", tmp_path / "out"), "--ray", f"127.0.0.1:{port}",
                       "--ray-timeout", "2", timeout=120)
    finally:
        stop()
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert {"silent": "said nothing for 2 s", "http": "answers, but not as a Ray cluster",
            "h2-silent": "did not join the cluster"}[kind] in proc.stderr


def test_the_ray_help_says_a_cluster_runs_code_here():
    proc = run_cli("batch", "--help", env={"COLUMNS": "400"})
    text = " ".join(proc.stdout.split())
    assert "run code on this machine as you" in text and "--ray-timeout" in text


@pytest.fixture
def private_checkpoint(tmp_path, tiny_checkpoint):
    path = tmp_path / "mine.pth.tar"
    path.write_bytes(tiny_checkpoint.read_bytes())
    os.chmod(path, 0o600)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_node_copy_of_a_checkpoint_is_private_and_never_written_through_a_link(private_checkpoint, tmp_path):
    from fomm_core.media.video import temp_path_for
    from fomm_doctor.batch.on_ray import keep_copy, node_cache, node_copy
    path, digest = private_checkpoint
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    folder = node_cache(digest)
    temp_path_for(folder / path.name).symlink_to(victim)  # a link at the temporary name
    (folder / path.name).symlink_to(victim)                 # and at the name itself
    assert node_copy(digest, path.name) is None
    local = keep_copy(digest, path.name, path.read_bytes())
    assert victim.read_text() == "mine\n" and node_copy(digest, path.name) == local
    assert stat.S_IMODE(os.lstat(local).st_mode) == 0o600 and stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_a_node_cache_of_another_user_is_refused(private_checkpoint):
    from fomm_core.errors import FommError
    from fomm_doctor.batch.on_ray import node_cache
    _, digest = private_checkpoint
    folder = node_cache(digest)
    os.chown(folder, 12345, 12345)
    try:
        with pytest.raises(FommError, match="another user"):
            node_cache(digest)
    finally:
        os.chown(folder, 0, 0)


def test_a_ray_batch_keeps_no_checkpoint_in_a_shared_temp_folder(media, tmp_path, private_checkpoint):
    """Someone made the old shared cache folder first, open to all, with a link where the copy would go: the
    batch leaves it and the linked file alone, and keeps its 0600 copy in a private folder of its own. The batch's
    temp folder (TMPDIR) is the test's own, so that two runs of the suite at once do not plant and remove the same
    folder under each other (they did)."""
    pytest.importorskip("ray", reason="Ray is in the [test] extra: pip install '.[test]'")
    import shutil
    import tempfile
    from fomm_core.cache import user_cache_dir
    path, digest = private_checkpoint
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    temp = Path(tempfile.mkdtemp(prefix="fd-"))  # short: the local Ray instance's sockets live under it
    shared = temp / "fomm-batch-checkpoints"
    planted = shared / digest
    planted.mkdir(parents=True)
    os.chmod(shared, 0o777)  # as another user would leave it
    (planted / path.name).symlink_to(victim)
    before = sorted(p.name for p in planted.iterdir())
    try:
        proc = run_cli("batch", one_job(media, tmp_path / "jobs", "x.mp4"), "-o", tmp_path / "out", "--checkpoint",
                       path, "--ray", "local", "--workers", "1", "--json", timeout=300, env={"TMPDIR": str(temp)})
        assert proc.returncode == 0 and summary_of(proc)["done"] == 1, proc.stderr[-3000:]
        assert victim.read_text() == "mine\n" and sorted(p.name for p in planted.iterdir()) == before
        assert (planted / path.name).is_symlink()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    copy = user_cache_dir("batch", "shipped", digest, path.name)
    assert stat.S_IMODE(os.lstat(copy).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(copy.parent).st_mode) == 0o700
