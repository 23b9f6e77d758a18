"""One animation as the doctor runs it, for every front end (`animate`, `live`, the page, `batch`): the cheap input
checks before anything slow, the checkpoint resolved and loaded (and kept loaded for the next request), and what
happened as data: the result, the notes worth telling, the closing sentence.

    models = Models()
    info = check_request(source, driving, output, choice, layout)       # flags, paths, image, video
    loaded = models.load(choice)                                        # resolve, load, settle the path
    done = animate(source, driving, output, loaded, layout, progress)  # -> Animation(result, notes, sentence)

Nothing here prints or knows a terminal or a page; a problem is a UserError or FommError with its sentence.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.errors import UserError

# "standard" is TPSMM's demo's name for absolute motion; avd needs a TPSMM checkpoint (the engine says so)
MODES = ("relative", "absolute", "standard", "avd")
MODES_HELP = ("relative (motion relative to the start frame), absolute (also called standard), or avd (TPSMM: "
              "the photo's identity, the video's pose)")


@dataclass(frozen=True)
class ModelChoice:
    """Which model runs, and how: what makes a loaded animator reusable for the next request."""
    checkpoint: Optional[str] = None    # a name or a path; None: the best face model present
    config: Optional[str] = None        # None: the one the checkpoint is known to fit, else detected
    device: str = "auto"
    precision: str = "auto"
    mode: str = "relative"
    adapt_scale: Optional[bool] = None  # None: each family's demo default
    size: Optional[int] = None          # frame side; None: the config's (256 where it names none)
    batch: int = 4                      # frames each animate call gets (Layout.batch_size; live: 1): `fast` is
                                        # measured fed so


@dataclass(frozen=True)
class Layout:
    """How one video is made from the animated frames."""
    batch_size: int = 4
    side_by_side: bool = False
    audio: bool = True
    find_best_frame: bool = False
    crop: bool = False
    paste_back: bool = False


@dataclass
class Loaded:
    """A model ready to animate, and the sentences about it worth telling once."""
    animator: object
    size: int
    checkpoint: object                  # the ResolvedCheckpoint (path, config, registry entry)
    name: str                           # the name the user knows it by (a registered name, else the file's)
    notes: list = field(default_factory=list)

    def describe(self) -> str:
        return (f"checkpoint {self.name} ({self.animator.FAMILY}) at {self.size}x{self.size}; inference path: "
                f"{self.animator.path}")


@dataclass
class Animation:
    """One finished video: the pipeline's result, what is worth telling about it, and the closing sentence."""
    result: object                      # fomm_core.inference.pipeline.AnimateResult
    notes: list                         # no face found, a stand-in method, a path changed on the way
    sentence: str
    start: str = ""                     # which driving frame relative motion started from, when it was searched

    def told(self) -> list:
        """Every sentence for the person who asked: the notes, then the start frame."""
        return self.notes + ([self.start] if self.start else [])


def check_mode(mode: str, what: str = "--mode") -> None:
    """A sentence starting with `what` ('--mode', 'jobs.csv row 3: mode') unless `mode` is one of MODES."""
    if mode not in MODES:
        raise UserError(f"{what} must be relative, absolute (also called standard) or avd (a TPSMM checkpoint), "
                        f"not '{mode}'.")


def check_request(source: Path, driving: Path, output: Path, choice: ModelChoice, layout: Layout):
    """The cheap checks (settings, output path, image, video) before the slow ones; -> the driving VideoInfo."""
    from fomm_core.device import check_device, check_precision
    from fomm_core.media.video import check_output_path
    check_mode(choice.mode)
    check_device(choice.device)
    check_precision(choice.precision)
    if layout.batch_size < 1:
        raise UserError("--batch-size must be at least 1.")
    if layout.side_by_side and layout.paste_back:
        raise UserError("--side-by-side and --paste-back cannot be combined: choose one layout for the output.")
    if not Path(source).exists():
        raise UserError(f"source image {source} does not exist.")
    if not Path(driving).exists():
        raise UserError(f"driving video {driving} does not exist.")
    check_output_path(Path(output), inputs=(Path(source), Path(driving)))
    check_source(Path(source))
    return check_driving(Path(driving))


def check_source(source: Path) -> None:
    """The photo's own check (it decodes as an image), alone: the page runs it as soon as a photo is uploaded."""
    from fomm_core.media.images import load_image
    load_image(Path(source))


def check_driving(driving: Path):
    """The driving video's own check (a video file this reads, never a playlist), alone; -> its VideoInfo. The
    page runs it as soon as a video is uploaded."""
    from fomm_core.media.video import probe_video
    return probe_video(Path(driving))


def require_torch():
    """Import torch, or raise a UserError that names the command that installs the right build."""
    import sys

    from fomm_doctor.checks.common import pip_cmd
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install ("DLL load failed")
        reason = "is not installed" if isinstance(exc, ModuleNotFoundError) else f"failed to import ({exc})"
        extra = pip_cmd(sys.platform, 'install "fomm-doctor[torch]"')
        raise UserError(f"PyTorch {reason}; run `fomm-doctor install --yes` to install the right build for this "
                        f"machine (or `{extra}`).") from None
    return torch


MIN_SIZE, MAX_SIZE = 64, 1024


def frame_side(model, size: Optional[int]) -> tuple:
    """(the frame side a model runs at, the sentence to say about it or ''): --size when given (LivePortrait's
    networks take 256 only), else the config's frame size; a config that names none runs at 256, as the
    original demos do, and says so."""
    from fomm_core.model.config import names_frame_size
    if size is not None:
        if model.family == "liveportrait" and size != 256:
            raise UserError("a LivePortrait model takes 256-px crops (and gives 512-px frames); --size cannot "
                            "change that.")
        if not MIN_SIZE <= size <= MAX_SIZE or size % 64:
            raise UserError(f"--size must be a multiple of 64 from {MIN_SIZE} to {MAX_SIZE}, not {size}.")
        return size, ""
    if model.family == "liveportrait" or names_frame_size(model.config):
        return model.size, ""
    return model.size, (f"config {model.config_name} names no frame size (its frame_shape is empty); it runs at "
                        f"{model.size}x{model.size}, as the original demo does unless told; give --size for another "
                        "(its demo's --img_shape: 384 for the TED model)")


def _keep(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


class Models:
    """Loaded checkpoints and animators, kept for the next request (loading and measuring `fast` are the slow
    part of a first run). A page keeps one; a batch worker a few, for jobs that mix checkpoints and modes."""

    def __init__(self, models_kept: int = 1, animators_kept: int = 1,
                 resolve: Optional[Callable] = None):
        self.models_kept, self.animators_kept = models_kept, animators_kept
        self._resolve = resolve
        self._models: OrderedDict = OrderedDict()       # (path, config, device) -> Model
        self._animators: OrderedDict = OrderedDict()    # (model key, precision, mode, scale) -> Loaded

    def load(self, choice: ModelChoice, on_step=None) -> Loaded:
        """The animator for `choice`, loaded once. on_step(done, total, what) follows the one-time work of
        fast/int8 (the int8 build, the measurement); nothing is reported when that is cached."""
        require_torch()
        from fomm_core.device import resolve_device
        resolved = self.resolve(choice.checkpoint)
        device = str(resolve_device(choice.device))
        model_key = (str(resolved.path), choice.config or resolved.config, device)
        key = (model_key, choice.precision, choice.mode, choice.adapt_scale, choice.size, choice.batch)
        if key not in self._animators:
            model = self._model(model_key)
            size, size_note = frame_side(model, choice.size)
            from fomm_core.inference.factory import make_animator
            animator = make_animator(model, device=device, precision=choice.precision, size=size,
                                     mode=choice.mode, adapt_movement_scale=choice.adapt_scale, batch=choice.batch,
                                     on_step=on_step)
            entry = resolved.entry or {}
            name = entry.get("name") or Path(resolved.path).name
            notes = [n for n in (resolved.note, size_note, animator.note) if n]
            loaded = Loaded(animator, size, resolved, name, notes)
            _keep(self._animators, key, loaded, self.animators_kept)
        self._animators.move_to_end(key)
        return self._animators[key]

    def resolve(self, checkpoint: Optional[str]):
        """A name or path -> the ResolvedCheckpoint (a batch passes its own resolver: files it shipped)."""
        if self._resolve is not None:
            return self._resolve(checkpoint)
        from fomm_doctor.checkpoints import resolve_checkpoint
        return resolve_checkpoint(checkpoint)

    def _model(self, model_key):
        from fomm_core.model.checkpoint import load_model
        if model_key not in self._models:
            path, config, device = model_key
            model = load_model(Path(path), config, device)
            _keep(self._models, model_key, model, self.models_kept)
            for old in [k for k in self._animators if k[0] not in self._models]:
                del self._animators[old]  # an animator holds its model: both go together
        self._models.move_to_end(model_key)
        return self._models[model_key]


def animate(source: Path, driving: Path, output: Path, loaded: Loaded, layout: Layout,
            progress: Optional[Callable[[int, int], None]] = None) -> Animation:
    """One video: `loaded`'s animator driven by `driving`, written to `output` as it appears (complete or not at
    all). progress(done, total_estimate) after each batch."""
    from fomm_core.inference.pipeline import animate_video
    result = animate_video(source, driving, output, loaded.animator, size=loaded.size,
                           batch_size=layout.batch_size, side_by_side=layout.side_by_side, audio=layout.audio,
                           find_best_frame=layout.find_best_frame, crop=layout.crop,
                           paste_back=layout.paste_back, progress=progress)
    start = f"started from driving frame {result.best_frame}" if layout.find_best_frame else ""
    return Animation(result, list(result.notes), result_sentence(result, layout.crop), start)


def result_sentence(result, crop: bool) -> str:
    """What was written, and how fast: the line `animate` ends with (the page shows it too)."""
    fps = result.frames / result.animate_seconds if result.animate_seconds > 0 else 0.0
    before = result.seconds - result.animate_seconds
    frames = f"{result.frames} frame{'s' * (result.frames != 1)}"
    return (f"wrote {result.path} ({result.size[0]}x{result.size[1]}): {frames} at {result.fps:g} "
            f"fps in {result.seconds:.1f} s ({before:.1f} s to prepare{', face tracking included' if crop else ''}"
            f", then {fps:.2f} frames/s)")
