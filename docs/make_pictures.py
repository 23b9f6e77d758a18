"""Make the README's two pictures from the real commands' output, so that they stay true:

    python docs/make_pictures.py            # writes docs/demo-strip.png and docs/check.svg

- docs/demo-strip.png: `fomm-doctor demo` is run; six frames of the side-by-side video it writes
  (source | driving | result) are laid out as the source photo beside two rows, the driving frames and the results.
- docs/check.svg: `fomm-doctor check --offline` is run in colour; its terminal output is kept as an SVG by rich.

Both commands run as a user runs them (`python -m fomm_doctor` in a subprocess); nothing is drawn by hand but the
captions. Run it again after a change to what `demo` or `check` shows, and commit the two files.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

DOCS = Path(__file__).resolve().parent
FRAMES = 6          # driving/result frames shown
PANEL = 128         # px per panel: the bundled model works at 64 px, so nothing is lost at 128
GAP = 4
CAPTION = 22        # px of caption band above each row
CHECK_COLUMNS = 100  # terminal width the check table is drawn at


def run_tool(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`python -m fomm_doctor ARGS` as a user runs it (env: the whole environment, default ours); -> the finished
    process (text)."""
    return subprocess.run([sys.executable, "-m", "fomm_doctor", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


# ---------------------------------------------------------------- the animation strip

def demo_video(folder: Path) -> Path:
    """Run `fomm-doctor demo` in `folder`; -> its side-by-side video (exit 0 means every step passed)."""
    out = folder / "fomm-demo.mp4"
    done = run_tool("demo", "-o", str(out), cwd=folder)
    if done.returncode != 0:
        sys.exit(f"fomm-doctor demo failed (exit {done.returncode}), so no picture was made:\n{done.stdout}"
                 f"{done.stderr}")
    return out


def pick_frames(video: Path, count: int) -> list:
    """`count` frames evenly spread over the video (first and last included), uint8 RGB [H, 3H, 3]."""
    from fomm_core.media.video import iter_frames
    frames = list(iter_frames(video))
    at = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in at]


def panels(frame: np.ndarray) -> tuple:
    """A side-by-side frame [H, 3W, 3] -> its (source, driving, result) panels, each PANEL x PANEL."""
    w = frame.shape[1] // 3
    return tuple(cv2.resize(frame[:, i * w:(i + 1) * w], (PANEL, PANEL), interpolation=cv2.INTER_AREA)
                 for i in range(3))


def caption(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    """Dark text whose baseline is `y` px down (canvas is RGB, white)."""
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)


def strip(frames: list) -> np.ndarray:
    """The source on the left; driving frames above, the results below.
    -> RGB uint8 [2 (CAPTION + PANEL) + GAP, PANEL + 3 GAP + n (PANEL + GAP) - GAP, 3]"""
    parts = [panels(f) for f in frames]
    left = PANEL + 3 * GAP                       # the source column and a wider gap after it
    row_h = CAPTION + PANEL
    canvas = np.full((2 * row_h + GAP, left + len(parts) * (PANEL + GAP) - GAP, 3), 255, np.uint8)
    src_y = (canvas.shape[0] - PANEL + CAPTION) // 2
    canvas[src_y:src_y + PANEL, :PANEL] = parts[0][0]
    caption(canvas, "source image", 4, src_y - 6)
    for row, (index, label) in enumerate(((1, "driving video"), (2, "result: the source, moved by the video"))):
        top = row * (row_h + GAP) + CAPTION
        caption(canvas, label, left, top - 6)
        for i, part in enumerate(parts):
            x = left + i * (PANEL + GAP)
            canvas[top:top + PANEL, x:x + PANEL] = part[index]
    return canvas


def make_strip(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        frames = pick_frames(demo_video(Path(tmp)), FRAMES)
    image = strip(frames)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        sys.exit(f"could not write {path}")


# ---------------------------------------------------------------- the check table

def check_output() -> str:
    """`fomm-doctor check --offline` in colour at CHECK_COLUMNS columns: its stdout with ANSI codes (exit 1
    only says that a check failed on this machine, which the picture then shows)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(COLUMNS=str(CHECK_COLUMNS), FORCE_COLOR="1", TERM="xterm-256color")
    done = run_tool("check", "--offline", env=env)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        sys.exit(f"fomm-doctor check failed (exit {done.returncode}), so no picture was made:\n{done.stderr}")
    return done.stdout


def without_web_fonts(svg: str) -> str:
    """rich's SVG without its @font-face rules: the picture loads nothing from outside (cdnjs is slow or blocked
    for many of our users), and a local monospace font draws the same grid, rich placing every span itself."""
    return re.sub(r"@font-face \{.*?\}\s*", "", svg, flags=re.S)


def make_check_svg(path: Path) -> None:
    """The ANSI output re-read by rich and exported as SVG: the table exactly as a terminal shows it."""
    from rich.console import Console
    from rich.text import Text
    console = Console(record=True, width=CHECK_COLUMNS, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    for line in check_output().rstrip("\n").split("\n"):
        console.print(Text.from_ansi(line), soft_wrap=True)
    svg = console.export_svg(title="fomm-doctor check --offline")
    path.write_text(without_web_fonts(svg), encoding="utf-8")


def main() -> None:
    make_strip(DOCS / "demo-strip.png")
    make_check_svg(DOCS / "check.svg")
    for name in ("demo-strip.png", "check.svg"):
        print(f"{DOCS / name}: {(DOCS / name).stat().st_size / 1000:.1f} kB")


if __name__ == "__main__":
    main()
