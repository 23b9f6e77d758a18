"""The live loop: a camera (or a video file standing in for one) drives a photo in real time.

Three parts that never wait on each other's backlog:
- a capture thread that keeps only the LATEST frame (older ones are dropped and counted, never queued), so a
  slow model never makes the picture lag further and further behind (`capture`);
- an inference thread: face found and cropped (smoothed box, `tracking`), relative motion from a reference frame
  (the first one, or whenever the user presses r/space), result kept with the capture time of its frame;
- the caller's loop (`session.LiveSession.run`): shows source | camera | result with frames/s and
  capture->display latency (`overlay`, `window`), reads keys, records the results, feeds a virtual camera
  (`outputs`).

    stats     LiveStats: frames captured, animated and dropped, latencies
    capture   the camera (OpenCV) or a video file (ffmpeg, as every file is read), always its latest frame
    sources   the source photos n/p step through
    tracking  the driving crop of each camera frame, its face box followed in a background thread
    overlay   the window's picture: source | camera | result, with frames/s and latency written on
    window    whether a window can open here, and the window itself
    outputs   where results go: a recording, a virtual camera, the window
    session   LiveOptions and LiveSession: the loop that wires them together

Frames are RGB from the capture on, as everywhere in fomm_core; only the window gets BGR. No terminal code here
and no checkpoint lookup: give `LiveSession` an Animator already built (a notebook can); problems are
`FommError` sentences; statistics come back as `LiveStats`.
"""
