"""Shared test fixtures: real media made with the bundled ffmpeg, and a CLI runner."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keep the test suite polite on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]


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


def run_cli(*args, env=None, timeout=300, cwd=None):
    """Run `python -m fomm_doctor ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fomm_doctor", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


@pytest.fixture
def cli():
    return run_cli
