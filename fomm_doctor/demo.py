"""The demo chain: torch -> checkpoint (sha256) -> model -> animate a held-out synthetic clip -> encode -> read back.

Each step is a `CheckResult` row with its time; a failed step skips the rest. The animation step judges the
model, not just the plumbing: the L1 of the animated frames against the driving frames must be at most half
the L1 of simply repeating the source frame. No terminal code here (fomm_doctor.commands.demo renders).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from fomm_doctor.render import CheckResult

# Training uses clips with seeds 1000..1199 (fomm_core.train.synthetic.synthetic_pairs); this one was never seen.
HELDOUT_SEED = 999_001
FRAMES = 32
FPS = 25
BAR = 0.5          # model L1 must be <= BAR x repeat-source L1
MIN_HEIGHT = 256   # small models' frames are scaled up in the video so that a person can see them


def _row(id_, status, summary, started, fix=None, **details):
    details["seconds"] = round(time.perf_counter() - started, 3)
    return CheckResult(f"demo.{id_}", status, f"{summary} ({details['seconds']:.1f} s)", details, fix)


def choose_device(torch, requested=None) -> str:
    """'cuda' when a GPU is usable (a tiny op on it succeeds), else 'cpu'; `requested` wins when given."""
    if requested:
        return requested
    if torch.cuda.is_available():
        try:
            (torch.ones(1, device="cuda") + 1).item()
            return "cuda"
        except Exception:  # a GPU torch can see but not use (driver too old, no kernels for this GPU)
            pass
    return "cpu"


def judge(animated, driving, source) -> dict:
    """L1 figures over frames 1.. (frame 0 is the source itself): model vs repeating the source frame."""
    model = float((animated[1:] - driving[1:]).abs().mean())
    repeat = float((source - driving[1:]).abs().mean())
    return {"model_l1": round(model, 5), "repeat_source_l1": round(repeat, 5),
            "ratio": round(model / repeat, 3) if repeat > 0 else None, "bar": BAR,
            "passed": repeat > 0 and model <= BAR * repeat}


def side_by_side(source, driving, animated, min_height=MIN_HEIGHT):
    """uint8 [T, H, 3W, 3] frames: source | driving | result, scaled up by an integer factor to min_height."""
    import numpy as np
    t = len(driving)
    row = np.concatenate([np.repeat(source[None], t, 0), driving, animated], axis=2)
    factor = max(1, -(-min_height // row.shape[1]))
    if factor > 1:
        row = row.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.ascontiguousarray(row)


def encode(frames, output: Path, fps=FPS) -> None:
    """H.264 + AAC (a 440 Hz tone as the audio track) with the bundled ffmpeg, via a temp file and a rename."""
    from fomm_core.media.video import ffmpeg_exe, ffmpeg_file
    ffmpeg = ffmpeg_exe()
    t, h, w, _ = frames.shape
    tmp = output.with_name(f".{output.stem}.tmp{os.getpid()}.mp4")
    cmd = [ffmpeg, "-y", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={t / fps:.3f}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "18",
           "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart", ffmpeg_file(tmp)]
    try:
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["ffmpeg failed"])
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()


def probe(path: Path) -> dict:
    """Frame count, size and whether there is an audio stream, read back from the file with the bundled ffmpeg."""
    import imageio_ffmpeg
    from fomm_core.media.video import ffmpeg_exe, ffmpeg_file
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_file(path)], capture_output=True, timeout=60)
    text = info.stderr.decode(errors="replace")
    size = re.search(r"Stream #\S+.*Video:.*?(\d{2,5})x(\d{2,5})", text)
    frames, _ = imageio_ffmpeg.count_frames_and_secs(ffmpeg_file(path))
    return {"frames": frames, "width": int(size.group(1)) if size else None,
            "height": int(size.group(2)) if size else None,
            "audio": bool(re.search(r"Stream #\S+.*Audio:", text))}


def run_demo(checkpoint=None, config=None, device=None, output="fomm-demo.mp4") -> list[CheckResult]:
    """The whole chain; returns its rows (the caller renders them). Bad input raises UserError."""
    results = []

    # 1. torch and the device
    started = time.perf_counter()
    try:
        import torch
    except Exception as exc:
        results.append(_row("torch", "fail", f"PyTorch cannot be imported ({type(exc).__name__})", started,
                            fix="fomm-doctor install --yes"))
        return results
    dev = choose_device(torch, device)
    results.append(_row("torch", "ok", f"torch {torch.__version__} imported, device {dev}", started,
                        torch=torch.__version__, device=dev))

    # 2. the checkpoint, and its sha256 against the manifest
    started = time.perf_counter()
    from fomm_doctor.checkpoints.store import file_sha256, resolve_checkpoint
    resolved = resolve_checkpoint(checkpoint)
    path, entry = Path(resolved.path), resolved.entry or {}
    want = entry.get("sha256")
    have = file_sha256(path)
    details = {"path": str(path), "sha256": have, "manifest_sha256": want}
    if want and want != have:
        results.append(_row("checkpoint", "fail", f"{path.name}: sha256 differs from the manifest's", started,
                            fix=f"fomm-doctor checkpoints fetch {entry.get('name', path.name)}", **details))
        return results
    if want:
        results.append(_row("checkpoint", "ok", f"{path.name} found, sha256 verified", started, **details))
    else:
        results.append(_row("checkpoint", "warn", f"{path.name} found; no manifest sha256 to verify it against",
                            started, **details))

    # 3. the model
    started = time.perf_counter()
    from fomm_core.model.checkpoint import load_checkpoints
    from fomm_core.model.config import frame_size, load_config
    from fomm_core.errors import FommError
    config_used = config or resolved.config
    try:
        generator, kp_detector = load_checkpoints(config_used, path, dev)
    except FommError as err:
        results.append(_row("model", "fail", str(err).rstrip("."), started))
        return results
    carried = _carried_config(path) if config_used is None else None
    size = frame_size(carried if carried is not None else load_config(config_used))
    params = sum(p.numel() for m in (generator, kp_detector) for p in m.parameters())
    results.append(_row("model", "ok", f"model loaded ({params / 1e6:.2f} M parameters, {size[0]}x{size[1]})",
                        started, parameters=params, config=config_used or "carried by the checkpoint"))

    # 4. animate a held-out clip from its first frame, and judge it
    started = time.perf_counter()
    from fomm_core.inference.engine import Animator
    from fomm_core.train.synthetic import make_clip, to_tensor
    clip = make_clip(HELDOUT_SEED, FRAMES, size[0]) if size[0] == size[1] else None
    if clip is None:
        results.append(_row("animate", "skipped", "the demo clip is square; this model is not", started))
        return results
    driving = to_tensor(clip)                                  # [T, 3, H, W]
    animator = Animator(generator, kp_detector, device=dev, precision="fp32", mode="relative")
    animator.set_source(driving[:1])
    animator.set_reference(driving[:1])
    animated = torch.cat([animator.animate(driving[i:i + 8]) for i in range(0, len(driving), 8)]).cpu()
    figures = judge(animated, driving, driving[:1])
    figures.update(clip_seed=HELDOUT_SEED, frames=FRAMES, path=animator.path)
    summary = (f"held-out clip animated: L1 {figures['model_l1']:.4f} vs repeating the source "
               f"{figures['repeat_source_l1']:.4f} (ratio {figures['ratio']}, must be <= {BAR})")
    results.append(_row("animate", "ok" if figures["passed"] else "fail", summary, started,
                        fix=None if figures["passed"] else "this checkpoint does not reconstruct the clip; "
                        "use the bundled one (omit --checkpoint) or retrain", **figures))

    # 5. encode source | driving | result with an audio track
    started = time.perf_counter()
    output = Path(output).expanduser()
    as_uint8 = lambda x: (x.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    frames = side_by_side(clip[0], clip, as_uint8(animated))
    try:
        if output.parent and not output.parent.exists():
            raise RuntimeError(f"folder {output.parent} does not exist")
        encode(frames, output)
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        results.append(_row("encode", "fail", f"could not write {output}: {err}", started))
        return results
    results.append(_row("encode", "ok", f"{output} written ({output.stat().st_size // 1024} KiB, with audio)",
                        started, output=str(output), width=frames.shape[2], height=frames.shape[1]))

    # 6. read it back
    started = time.perf_counter()
    found = probe(output)
    want = {"frames": len(frames), "width": frames.shape[2], "height": frames.shape[1], "audio": True}
    wrong = [k for k in want if found.get(k) != want[k]]
    results.append(_row("readback", "fail" if wrong else "ok",
                        (f"read back: {found['frames']} frames {found['width']}x{found['height']}, "
                         f"audio {'yes' if found['audio'] else 'no'}")
                        + (f"; expected {', '.join(f'{k} {want[k]}' for k in wrong)}" if wrong else ""),
                        started, **found))
    return results


def _carried_config(path):
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else None
