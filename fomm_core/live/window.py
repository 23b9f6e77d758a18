"""The live window: whether one can open here at all, and the window itself (OpenCV's highgui)."""
from __future__ import annotations

import os

import numpy as np

from fomm_core.errors import FommError

NO_WINDOW = ("no_window", "")   # the setting that is the way out of every window problem


def check_window() -> None:
    """Raise a FommError sentence when an OpenCV window cannot open here.

    OpenCV's Qt build does not raise when there is no display: Qt aborts the whole process. So on Linux the
    display is checked first, and opening a window is tried in a throwaway subprocess.
    """
    import subprocess
    import sys

    import cv2
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        raise FommError("this OpenCV has no window support (a -headless build); install opencv-python, or run "
                        "without a window.", setting=NO_WINDOW)
    if not sys.platform.startswith("linux"):
        return
    display = os.environ.get("DISPLAY")
    if not display:
        raise FommError("there is no display (DISPLAY is not set); record the result to a file and run without "
                        "a window.", setting=NO_WINDOW)
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        raise FommError(f"opening a window on display {display} did not finish; run without a window.",
                        setting=NO_WINDOW) from None
    if done.returncode != 0:
        raise FommError(f"no window can be opened on display {display}; run without a window.", setting=NO_WINDOW)


class Window:
    """The one window a session shows its picture in; `key()` also lets it redraw."""

    TITLE = "fomm-doctor live"

    def open(self) -> None:
        import cv2
        try:
            cv2.namedWindow(self.TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no Qt toolbar
        except cv2.error:  # the checks of check_window() passed, yet no window
            raise FommError("no window could be opened; run without a window.", setting=NO_WINDOW) from None

    def show(self, view_bgr: np.ndarray) -> None:
        import cv2
        cv2.imshow(self.TITLE, view_bgr)

    def key(self) -> int:
        """The key pressed in the window, -1 for none."""
        import cv2
        return cv2.waitKey(1) & 0xFF

    def close(self) -> None:
        import cv2
        cv2.destroyAllWindows()
