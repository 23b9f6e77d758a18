"""Where live results go, each optional: a recording, a virtual camera, the window."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fomm_core.live.window import Window
from fomm_core.media.video import VideoWriter


def letterbox(image: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The image scaled to fit (w, h), its aspect kept, centred on black; unchanged when it is that size."""
    import cv2
    w, h = frame_size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    scale = min(w / image.shape[1], h / image.shape[0])
    fw, fh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - fh) // 2, (w - fw) // 2
    out[top:top + fh, left:left + fw] = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_AREA)
    return out


def open_virtual_camera(frame_size: tuple[int, int], fps: float):
    """(camera or None, sentence): pyvirtualcam where installed with a backend; a soft failure otherwise."""
    try:
        import pyvirtualcam
    except ImportError:
        return None, ('virtual camera off: pyvirtualcam is not installed (pip install "fomm-doctor[virtualcam]", '
                      "plus OBS or v4l2loopback as its backend)")
    try:
        cam = pyvirtualcam.Camera(width=frame_size[0], height=frame_size[1], fps=fps)
    except Exception as err:  # no backend: OBS / v4l2loopback / Unity Capture missing
        return None, f"virtual camera off: pyvirtualcam found no backend ({err})"
    return cam, f"virtual camera on: {cam.device}"


class LiveOutputs:
    """A recording (one frame per camera frame it stands for, so it keeps real time), a virtual camera, a window.
    `close()` keeps a recording cut short by a lost camera."""

    def __init__(self, window: bool):
        self.window = Window() if window else None
        self.writer = None
        self.vcam = None
        self.frame_size = (0, 0)

    def open(self, fps: float, frame_size: tuple[int, int], output: Path | None = None,
             virtual_camera: bool = False) -> list[str]:
        """Open what was asked for; the sentences worth showing (the virtual camera's state).

        frame_size: (w, h) of every frame sent; a frame of another size (after n/p to a photo of another
        shape, with paste-back) is fitted into it, its aspect kept."""
        self.frame_size = frame_size
        notes = []
        if output:
            self.writer = VideoWriter(output, fps, frame_size)
        if virtual_camera:
            self.vcam, sentence = open_virtual_camera(frame_size, fps)
            notes.append(sentence)
        if self.window is not None:
            self.window.open()
        return notes

    def send(self, image: np.ndarray, repeat: int) -> None:
        image = letterbox(image, self.frame_size)
        if self.writer is not None:
            for _ in range(repeat):
                self.writer.write(image)
        if self.vcam is not None:
            self.vcam.send(np.ascontiguousarray(image))

    def show(self, view_bgr: np.ndarray) -> None:
        if self.window is not None:
            self.window.show(view_bgr)

    def key(self) -> int:
        """The key pressed in the window (which also lets it redraw); -1 without one."""
        return self.window.key() if self.window is not None else -1

    def close(self) -> None:
        if self.writer is not None:
            if self.writer.frames:
                self.writer.close()
            else:
                self.writer.abort()
        if self.vcam is not None:
            self.vcam.close()
        if self.window is not None:
            self.window.close()
