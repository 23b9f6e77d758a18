"""The picture the live window shows: source | camera crop | result, with frames/s, latency and the keys."""
from __future__ import annotations

import numpy as np

from fomm_core.live.stats import LiveStats

KEYS_HELP = "r/space: reference  n/p: source  q/Esc: quit"


def compose_view(source, camera, result, stats: LiveStats, last_latency: float, face: bool,
                 status: str = "") -> np.ndarray:
    """source | camera crop | result side by side (RGB in, BGR out, for cv2.imshow) with frames/s and latency
    written on, and `status` (what is being prepared) in place of the keys while there is one."""
    import cv2
    height = max(256, camera.shape[0])   # small models: tiles big enough to see and to hold the text
    tiles = [t if t.shape[0] == height else
             cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height),
                        interpolation=cv2.INTER_NEAREST if t.shape[0] < height else cv2.INTER_AREA)
             for t in (source, camera, result)]   # a pasted-back result keeps its aspect
    panel = cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR)
    text = (f"{stats.fps:4.1f} fps  latency {1000 * last_latency:4.0f} ms  dropped {stats.dropped}"
            + ("" if face else "  no face"))
    for top, bottom in ((0, 28), (panel.shape[0] - 24, panel.shape[0])):  # darkened bands keep text legible
        panel[top:bottom] = (panel[top:bottom] * 0.35).astype(np.uint8)
    cv2.putText(panel, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(panel, status or KEYS_HELP, (8, panel.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                cv2.LINE_AA)
    return panel
