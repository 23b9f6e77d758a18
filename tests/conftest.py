"""Shared test fixtures: real media made with the bundled ffmpeg, and a CLI runner."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Two test processes share the 2 cores (`pytest -n 2`), both busy nearly all the run: one OpenMP thread each, so
# neither waits on a thread the other process has put off its core (the whole suite, the same code on the same
# machine: 563 s and 942 CPU-s counted in tests with one thread each, 590 s and 1008 CPU-s with two). Where a test
# or its subprocess asks for more threads (`--threads 2`), they sleep when they wait instead of spinning against
# the other process's. The tests' CLI subprocesses inherit both.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One cache folder for the whole run, never the user's: int8 models and the measured `fast` choice are built
# once per model and shared by the tests and the xdist workers (and by the tests' CLI subprocesses: all inherit
# the variable from the process that set it first).
_OWN_CACHE = None
if "FOMM_DOCTOR_CACHE" not in os.environ:
    _OWN_CACHE = os.environ["FOMM_DOCTOR_CACHE"] = tempfile.mkdtemp(prefix="fomm-test-cache-")


from forked_cli import ForkedCli  # noqa: E402  (after the variables above, which its server inherits)

RUN_CACHE = Path(os.environ["FOMM_DOCTOR_CACHE"])  # the run's, whoever set it, before a test points it elsewhere


def made_once(folder: Path, make) -> Path:
    """`folder` (in the run's cache), made by make(work) in a folder beside it unless it is there, then renamed
    into place: never seen half-written. When another test process put it there first, theirs is kept."""
    import shutil
    if not folder.exists():
        work = tempfile.mkdtemp(prefix=".making-", dir=folder.parent)
        try:
            make(Path(work))
            os.rename(work, folder)
        except OSError:
            if not folder.exists():
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder


def share_int8_build(folder: Path) -> None:
    """An int8 build a test made in a cache of its own, copied into the run's cache unless it is there, where later
    tests (and the bench's subprocesses) load it instead of building it again; a copy is checked file by file
    against its verdict, as any cached model."""
    import shutil
    from fomm_core.private import private_dir
    made_once(private_dir(RUN_CACHE / "int8") / folder.name,
              lambda work: shutil.copytree(folder, work, dirs_exist_ok=True))


def pytest_unconfigure(config):
    """The process that made the run's cache folder removes it when the run ends (the workers end first)."""
    if _OWN_CACHE:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)



def _file_cost(item) -> tuple:
    """Its file's place in the run, by its `slow` mark: (seconds on 2 cores, both test processes busy; first=True
    for a file whose results later files reuse). Unmarked: (0, False)."""
    mark = item.get_closest_marker("slow")
    return (float(mark.args[0]) if mark and mark.args else 0.0), bool(mark and mark.kwargs.get("first"))


def pytest_collection_modifyitems(session, config, items):
    """The files marked first, then the costliest, then the rest in their own order. With `--dist loadfile
    --no-loadscope-reorder` the two test processes take whole files in this order, so the short files fill the end
    instead of one process running a two-minute file alone while the other has finished."""
    cost = {}
    for item in items:
        seconds, first = _file_cost(item)
        was = cost.get(item.fspath, (0.0, False))
        cost[item.fspath] = (max(was[0], seconds), was[1] or first)
    items.sort(key=lambda item: (not cost[item.fspath][1], -cost[item.fspath][0]))  # stable: tests keep their order


REPO = Path(__file__).resolve().parents[1]

# A tiny random FOMM (64x64, 4 keypoints) for tests of the plumbing around the model: fast, any result.
TINY_MODEL = {
    "dataset_params": {"frame_shape": [64, 64, 3]},
    "model_params": {
        "common_params": {"num_kp": 4, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 32,
                               "scale_factor": 0.5, "num_blocks": 3},
        "generator_params": {"block_expansion": 8, "max_features": 32, "num_down_blocks": 2,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 3,
                                                     "scale_factor": 0.5}},
    },
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """TINY_MODEL with random weights (seed 0) saved as one of our checkpoints (it carries its config)."""
    import torch
    from fomm_core.model.config import build_models
    torch.manual_seed(0)
    generator, kp_detector = build_models(TINY_MODEL)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth.tar"
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(),
                "config": TINY_MODEL}, path)
    return path


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path, *, frames=12, size=(96, 64), fps=25, audio=True, ffmpeg=None, extra_args=()):
    """Encode a real test clip with ffmpeg: a moving test pattern, optionally with a sine audio track."""
    import imageio_ffmpeg
    ffmpeg = ffmpeg or imageio_ffmpeg.get_ffmpeg_exe()
    w, h = size
    dur = frames / fps
    cmd = [ffmpeg, "-y", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={dur}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={dur}", "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", *extra_args, str(path)]
    subprocess.run(cmd, check=True)
    return Path(path)


@pytest.fixture
def clip_factory(tmp_path, ffmpeg_exe):
    """`clip_factory(name, frames=..., size=(w, h), fps=..., audio=True)` -> Path of a real mp4."""
    def _make(name="clip.mp4", **kw):
        return make_clip(tmp_path / name, ffmpeg=ffmpeg_exe, **kw)
    return _make


_FORKED = ForkedCli()


def run_cli(*args, env=None, timeout=300, cwd=None):
    """Run `python -m fomm_doctor ARGS` in a process of its own; returns CompletedProcess (text). The process is
    forked from one that has imported torch where that cannot change what the command does (tests/forked_cli.py),
    else a fresh interpreter."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    done = _FORKED.run([*map(str, args)], full_env, timeout, cwd)
    if done is not None:
        return done
    return subprocess.run([sys.executable, "-m", "fomm_doctor", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


@pytest.fixture
def cli():
    return run_cli
