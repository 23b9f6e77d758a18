"""`fomm-doctor animate` end to end: marginal frames/s of each precision and peak memory, short clip vs long clip.

    python benchmarks/animate_end_to_end.py [--short 24] [--long 96] [--precisions fp32,fast]

The model is the vox-256 architecture with the bench's stress weights (random, scaled so the picture spans
0..1), saved as a checkpoint that carries its config. The driving clips are a real face (the shipped astronaut
portrait) moving smoothly, encoded by ffmpeg with an audio track. Each command runs once per clip length,
interleaved across precisions; marginal frames/s = (long - short frames) / (long - short seconds), which
leaves out start-up, model loading and the one-time int8 build (done in a warm-up run first). The original
code's frames/s is measured in this run on the same weights (model only, frame by frame as its demo does:
no video decoding or encoding counted, so the ratio is conservative). Peak RSS is each command's own (wait4).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stress_checkpoint(folder: Path) -> Path:
    import torch
    from fomm_core.bench.weights import our_models
    from fomm_core.model.config import load_config
    generator, kp_detector = our_models("vox-256", weights="stress")
    path = folder / "vox-stress.pth.tar"
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(),
                "config": load_config("vox-256")}, path)
    return path


def face_clip(path: Path, frames: int, size: int = 256, fps: int = 25) -> Path:
    """The astronaut portrait moving smoothly, with a tone, as an H.264 mp4 (ffmpeg from imageio-ffmpeg)."""
    import imageio_ffmpeg
    from fomm_core.inference.calibration import moving_clip, real_faces
    face = real_faces(size)[0]
    video = np.concatenate([moving_clip(face, 24, np.random.default_rng(i)) for i in range(frames // 24 + 1)])
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [ffmpeg, "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
           "-r", str(fps), "-i", "-", "-f", "lavfi", "-i", f"sine=frequency=300:duration={frames / fps}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(cmd, input=video[:frames].tobytes(), check=True)
    return path


def run_animate(photo, clip, out, checkpoint, precision, env) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `fomm-doctor animate` command."""
    cmd = [sys.executable, "-m", "fomm_doctor", "animate", str(photo), str(clip), "-o", str(out),
           "--checkpoint", str(checkpoint), "--precision", precision]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"animate --precision {precision} failed: {err.strip().splitlines()[-1:]}")
    return seconds, usage.ru_maxrss / 1024


def reference_fps(frames: int = 6) -> float:
    import torch
    from fomm_core.bench.reference import reference_available
    from fomm_core.bench.runners import make_runner
    if not reference_available():
        return 0.0
    torch.set_num_threads(min(os.cpu_count() or 1, 4))
    _, run = make_runner("reference", "vox-256", 256, frames, weights="stress")
    run()
    start = time.perf_counter()
    run()
    return frames / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=24)
    p.add_argument("--long", type=int, default=96)
    p.add_argument("--precisions", default="fp32,fast")
    ns = p.parse_args(argv)
    precisions = ns.precisions.split(",")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="fomm-e2e-") as tmp:
        tmp = Path(tmp)
        checkpoint = stress_checkpoint(tmp)
        photo = tmp / "photo.png"
        import cv2
        from fomm_core.inference.calibration import real_faces
        cv2.imwrite(str(photo), real_faces(256)[1][:, :, ::-1])
        clips = {n: face_clip(tmp / f"drive{n}.mp4", n) for n in (ns.short, ns.long)}
        for precision in precisions:  # warm-up: the one-time int8 build and path measurement are cached here
            run_animate(photo, clips[ns.short], tmp / "warm.mp4", checkpoint, precision, env)
        ref = reference_fps()
        results = {pr: {} for pr in precisions}
        for n in (ns.short, ns.long):
            for precision in precisions:
                results[precision][n] = run_animate(photo, clips[n], tmp / "out.mp4", checkpoint, precision, env)
    print(f"animate end to end, vox-256 stress weights, 256 px, {ns.short} vs {ns.long} frames")
    print(f"original code (model only, frame by frame): {ref:.2f} frames/s")
    print(f"{'precision':<10}{'short s':>9}{'long s':>9}{'marginal fps':>14}{'x orig':>8}{'RSS short/long MB':>19}")
    for precision, by_n in results.items():
        (t1, m1), (t2, m2) = by_n[ns.short], by_n[ns.long]
        fps = (ns.long - ns.short) / (t2 - t1) if t2 > t1 else float("inf")
        ratio = f"{fps / ref:.2f}" if ref else "-"
        print(f"{precision:<10}{t1:>9.1f}{t2:>9.1f}{fps:>14.2f}{ratio:>8}{f'{m1:.0f} / {m2:.0f}':>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
