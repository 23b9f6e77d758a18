"""The demo chain: torch -> checkpoint (sha256) -> model -> animate a held-out synthetic clip -> encode -> read back.

Each step is a `CheckResult` row with its time; a failed step skips the rest. The animation step judges the
model, not just the plumbing: the L1 of the animated frames against the driving frames must be at most half
the L1 of simply repeating the source frame. No terminal code here (fomm_doctor.commands.demo renders).
"""
from __future__ import annotations

import time
from pathlib import Path

from fomm_doctor.report import CheckResult
from fomm_doctor.units import byte_size

# Training uses clips with seeds 1000..1199 (fomm_core.train.synthetic.synthetic_pairs); this one was never seen.
HELDOUT_SEED = 999_001
FRAMES = 32
FPS = 25
BAR = 0.5          # model L1 must be <= BAR x repeat-source L1
MIN_HEIGHT = 256   # small models' frames are scaled up in the video so that a person can see them


def _row(id_, status, summary, started, fix=None, **details):
    details["seconds"] = round(time.perf_counter() - started, 3)
    return CheckResult(f"demo.{id_}", status, f"{summary} ({details['seconds']:.1f} s)", details, fix)


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
    """H.264 with a 440 Hz tone as the audio track, written by the one video writer (temp file, then rename)."""
    from fomm_core.media.video import VideoWriter
    _, h, w, _ = frames.shape
    with VideoWriter(output, fps, (w, h), tone_hz=440) as writer:
        for frame in frames:
            writer.write(frame)


def probe(path: Path) -> dict:
    """Frame count (every frame decoded), size and whether there is an audio stream, read back from the file."""
    from fomm_core.media.video import iter_frames, probe_video
    info = probe_video(path)
    return {"frames": sum(1 for _ in iter_frames(path, info=info)), "width": info.width, "height": info.height,
            "audio": info.has_audio}


class _Stop(Exception):
    """A step failed: its row ends the chain."""

    def __init__(self, row: CheckResult):
        super().__init__(row.summary)
        self.row = row


def run_demo(checkpoint=None, config=None, device="auto", output="fomm-demo.mp4") -> list[CheckResult]:
    """The whole chain; returns its rows (the caller renders them). Bad input raises UserError or FommError.

    checkpoint None: the bundled synthetic model (by name), whatever else is present: the L1 bar is set for it.
    """
    from fomm_doctor.checkpoints import BUNDLED
    results = []
    try:
        dev = _torch_step(results, device)
        resolved = _checkpoint_step(results, checkpoint or BUNDLED)
        generator, kp_detector, size = _model_step(results, resolved, config or resolved.config, dev)
        clip, animated = _animate_step(results, generator, kp_detector, size, dev)
        frames, path = _encode_step(results, clip, animated, Path(output).expanduser())
        _readback_step(results, frames, path)
    except _Stop as stop:
        results.append(stop.row)
    return results


def _torch_step(results, device):
    """torch imports; -> the device `device` resolves to."""
    started = time.perf_counter()
    try:
        import torch
    except Exception as exc:
        raise _Stop(_row("torch", "fail", f"PyTorch cannot be imported ({type(exc).__name__})", started,
                         fix="fomm-doctor install --yes")) from None
    from fomm_core.device import resolve_device
    dev = str(resolve_device(device))
    results.append(_row("torch", "ok", f"torch {torch.__version__} imported, device {dev}", started,
                        torch=torch.__version__, device=dev))
    return dev


def _checkpoint_step(results, checkpoint):
    """The checkpoint found, and its sha256 compared with the manifest's; -> the ResolvedCheckpoint."""
    started = time.perf_counter()
    from fomm_doctor.checkpoints import resolve_checkpoint
    from fomm_doctor.net.digests import file_sha256
    resolved = resolve_checkpoint(checkpoint)
    path, entry = Path(resolved.path), resolved.entry or {}
    if path.is_dir():   # a set of files: LivePortrait's five networks
        name = entry.get("name", path.name)
        raise _Stop(_row("checkpoint", "fail", f"{name} is a set of networks of another family; the demo's held-out "
                         "clip and its bar are made for FOMM models", started, path=str(path),
                         fix=f"fomm-doctor checkpoints verify {name}, then fomm-doctor animate PHOTO VIDEO "
                             f"--checkpoint {name}"))
    want = entry.get("sha256")
    have = file_sha256(path)
    details = {"path": str(path), "sha256": have, "manifest_sha256": want}
    if want and want != have:
        raise _Stop(_row("checkpoint", "fail", f"{path.name}: sha256 differs from the manifest's", started,
                         fix=f"fomm-doctor checkpoints fetch {entry.get('name', path.name)}", **details))
    if want:
        results.append(_row("checkpoint", "ok", f"{path.name} found, sha256 verified", started, **details))
    else:
        results.append(_row("checkpoint", "warn", f"{path.name} found; no manifest sha256 to verify it against",
                            started, **details))
    return resolved


def _model_step(results, resolved, config, dev):
    """-> (generator, kp_detector, frame size (h, w)) loaded strictly."""
    started = time.perf_counter()
    from fomm_core.errors import FommError
    from fomm_core.model.checkpoint import load_checkpoints
    from fomm_core.model.config import frame_size, load_config
    path = Path(resolved.path)
    try:
        generator, kp_detector = load_checkpoints(config, path, dev)
    except FommError as err:
        raise _Stop(_row("model", "fail", str(err).rstrip("."), started)) from None
    carried = _carried_config(path) if config is None else None
    size = frame_size(carried if carried is not None else load_config(config))
    params = sum(p.numel() for m in (generator, kp_detector) for p in m.parameters())
    results.append(_row("model", "ok", f"model loaded ({params / 1e6:.2f} M parameters, {size[0]}x{size[1]})",
                        started, parameters=params, config=config or "carried by the checkpoint"))
    return generator, kp_detector, size


def _animate_step(results, generator, kp_detector, size, dev):
    """Animate the held-out clip from its first frame and judge it; -> (clip, animated frames [T, 3, H, W])."""
    started = time.perf_counter()
    import torch

    from fomm_core.inference.fomm import Animator
    from fomm_core.media.images import frames_to_tensor
    from fomm_core.train.synthetic import make_clip
    if size[0] != size[1]:
        raise _Stop(_row("animate", "skipped", "the demo clip is square; this model is not", started))
    clip = make_clip(HELDOUT_SEED, FRAMES, size[0])
    driving = frames_to_tensor(clip)                           # [T, 3, H, W]
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
    return clip, animated


def _encode_step(results, clip, animated, output: Path):
    """source | driving | result with an audio track; -> (the frames written, the file)."""
    started = time.perf_counter()
    import numpy as np

    from fomm_core.errors import FommError
    from fomm_core.media.images import tensor_to_frames
    frames = side_by_side(clip[0], clip, np.stack(tensor_to_frames(animated)))
    try:
        encode(frames, output)
    except (FommError, OSError) as err:
        raise _Stop(_row("encode", "fail", f"could not write {output}: {err}", started)) from None
    results.append(_row("encode", "ok", f"{output} written ({byte_size(output.stat().st_size)}, with audio)",
                        started, output=str(output), width=frames.shape[2], height=frames.shape[1]))
    return frames, output


def _readback_step(results, frames, output: Path) -> None:
    started = time.perf_counter()
    found = probe(output)
    want = {"frames": len(frames), "width": frames.shape[2], "height": frames.shape[1], "audio": True}
    wrong = [k for k in want if found.get(k) != want[k]]
    results.append(_row("readback", "fail" if wrong else "ok",
                        (f"read back: {found['frames']} frames {found['width']}x{found['height']}, "
                         f"audio {'yes' if found['audio'] else 'no'}")
                        + (f"; expected {', '.join(f'{k} {want[k]}' for k in wrong)}" if wrong else ""),
                        started, **found))


def _carried_config(path):
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else None
