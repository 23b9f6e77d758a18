"""The int8 path: the per-frame work run by OpenVINO with int8 weights and activations (NNCF quantisation).

    runner = load_or_build(generator, kp_detector, size, make_exact=lambda: exact_engine(generator, kp_detector),
                           threads=2, on_step=print)      # Int8Refused: why not (exact_engine: inference.fomm)
    kp = runner.keypoints(frames)              # frames [B, 3, S, S] -> {'value' [B, K, 2], 'jacobian' [B, K, 2, 2]}
    out = runner.render(kp_driving, source)    # normalised keypoints + the engine's cached source -> [B, 3, S, S]

Per frame: driving keypoints (one graph), then dense motion, feature warp and decoder on the source's cached
keypoints, features and heatmaps (a second graph). The source's own encoding stays with the engine (once).
Why it is built this way (measured side by side with the original code; see the bench):
- OpenVINO, not ONNX Runtime: ONNX Runtime's int8 ran slower than its own float32; OpenVINO's int8 was 4.9x the
  original code on an Intel Xeon without AMX and about 8x on an AMD EPYC with AVX512-BF16.
- Inference precision is set to f32: on CPUs with AVX512-BF16 or AMX OpenVINO's default is bf16, which changes
  the numbers and was slower than f32 where the CPU has no AMX.
- The unfused modules are exported: OpenVINO folds batch-norm itself, while our sub-pixel up block (fusion.py)
  becomes a slow ScatterNDUpdate. 2x2 inverses are closed-form (torch.inverse does not export).
- Calibrated on frames of several faces shipped with the package (never the clip being animated) and checked on
  held-out pairs against the exact float32 engine: below MIN_PSNR the model is refused with a sentence. The model
  and the verdict are cached in the user cache folder, keyed by a hash of the weights, the frame size and the
  OpenVINO and NNCF versions; a cached model loads in about a second.
- The cache trusts nothing it did not check: its folder must be a private one of ours (not a link, not another
  user's: else int8 is refused with a sentence and another path runs); a verdict is used only for the weights,
  size, versions and graphs it names, and a model only when its files have the sha256s the verdict lists (else it
  is rebuilt).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import sys
import time
import warnings
from pathlib import Path

from torch import nn

from fomm_core.cache import user_cache_dir
from fomm_core.errors import FommError
from fomm_core.inference.motion import inverse_2x2
from fomm_core.private import check_private, private_dir

MIN_PSNR = 35.0          # dB against the exact float32 path, on held-out faces
CALIBRATION_FRAMES = 2  # per face pair: 12 pairs, 24 frames (48 took twice as long and scored the same)
GRAPH_VERSION = 1        # bump when the exported graphs change: old cached models are then rebuilt
INSTALL_HINT = 'pip install "fomm-doctor[openvino]"'
MODEL_FILES = ("keypoints.xml", "keypoints.bin", "render.xml", "render.bin")  # what ov.save_model writes


class Int8Refused(FommError):
    """The int8 path cannot run here, or fails the quality bar; the message says which, in one sentence."""


def runtime_versions() -> dict:
    """{'openvino': version, 'nncf': version}; Int8Refused when either is missing (int8 needs both to build).

    OpenVINO is imported (it runs the model); NNCF's version is read from its metadata only: importing it takes
    seconds, and it is needed only when a model is built.
    """
    from importlib.metadata import PackageNotFoundError, version
    try:
        openvino = _openvino()
        nncf = version("nncf")
    except (Exception, PackageNotFoundError) as err:  # absent, or a broken install (missing shared library...)
        raise Int8Refused(f"the int8 path needs OpenVINO and NNCF ({type(err).__name__}: {err}); "
                          f"install them with: {INSTALL_HINT}") from None
    return {"openvino": openvino.__version__, "nncf": nncf}


def weights_fingerprint(*modules) -> str:
    """sha256 of the modules' state (names, dtypes, shapes, values): the same weights give the same key,
    whichever file or container they came from."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.float().numpy().tobytes() if t.dtype.is_floating_point else t.numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# The two exported graphs


class KeypointGraph(nn.Module):
    """frames [B, 3, S, S] -> (value [B, K, 2], jacobian [B, K, 2, 2])."""

    def __init__(self, kp_detector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, frames):
        kp = self.kp_detector(frames)
        return kp["value"], kp["jacobian"]


class RenderGraph(nn.Module):
    """Normalised driving keypoints + the cached source -> the animated frames [B, 3, S, S] in 0..1.

    Inputs: value [B, K, 2], jacobian [B, K, 2, 2]; the source's value [1, K, 2], jacobian [1, K, 2, 2],
    downsampled image [1, 3, h, w], Gaussian heatmaps [1, K, h, w] and encoder features [1, F, h', w'].
    """

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, value, jacobian, source_value, source_jacobian, source_image, source_heatmap, features):
        dm = self.generator.dense_motion_network
        kp_driving = {"value": value, "jacobian": jacobian}
        kp_source = {"value": source_value, "jacobian": source_jacobian}
        source = {"image": source_image, "heatmap": source_heatmap}
        heatmaps = dm.create_heatmap_representations(source, kp_driving)                # [B, K+1, 1, h, w]
        sparse = dm.create_sparse_motions(source_image.shape[2:], kp_driving, kp_source, inverse_2x2)
        x = dm.hourglass_input(heatmaps, dm.create_deformed_source_image(source_image, sparse))
        motion = dm.dense_flow(sparse, *dm.heads(dm.hourglass(x)))
        batch = value.shape[0]
        warped = self.generator.warp_features(features.expand(batch, -1, -1, -1), motion["deformation"],
                                              motion.get("occlusion_map"))
        return self.generator.decode(warped)


def source_inputs(source) -> tuple:
    """The engine's cached source (keys 'kp', 'motion', 'features') as the render graph's source inputs."""
    kp, motion = source["kp"], source["motion"]
    return (kp["value"], kp["jacobian"], motion["image"], motion["heatmap"], source["features"])


def supported(generator, kp_detector) -> str:
    """'' when the int8 path can run this model, else why not (a sentence fragment)."""
    if generator.dense_motion_network is None:
        return "the int8 path needs a model with a dense motion network"
    if getattr(kp_detector, "jacobian", None) is None:
        return "the int8 path needs a model whose keypoints have Jacobians"
    return ""


def _no_telemetry():
    """OpenVINO's converter and NNCF send usage statistics to Google Analytics unless a consent file says no.
    Nothing leaves the user's machine from our tool: with `openvino_telemetry` unimportable both use no-op stubs."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None


def _openvino():
    _no_telemetry()
    import openvino
    return openvino


def _nncf():
    _no_telemetry()
    import nncf
    nncf.set_log_level(40)  # errors only: its info lines and bars would break the CLI's own progress display
    return nncf


def _np(tensor):
    return tensor.detach().float().contiguous().cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------
# Running a built model


def _compile_options(threads) -> dict:
    # f32 explicitly: OpenVINO's CPU default is bf16 where the CPU has AVX512-BF16 or AMX
    options = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = int(threads)
    return options


class Int8Runner:
    """The two compiled int8 graphs of one model at one frame size (float32 torch tensors in and out, CPU)."""

    def __init__(self, folder: Path, threads=None):
        core = _openvino().Core()
        options = _compile_options(threads)
        self.folder = Path(folder)
        self._kp = core.compile_model(str(self.folder / "keypoints.xml"), "CPU", options)
        self._render = core.compile_model(str(self.folder / "render.xml"), "CPU", options)
        self.check = json.loads((self.folder / "check.json").read_text(encoding="utf-8"))
        self._source, self._source_arrays = None, []

    def keypoints(self, frames) -> dict:
        import torch
        value, jacobian = self._kp(_np(frames)).to_tuple()
        return {"value": torch.from_numpy(value.copy()), "jacobian": torch.from_numpy(jacobian.copy())}

    def render(self, kp_driving, source):
        import torch
        if self._source is not source:  # the source's arrays once per source, not per batch (features: MBs)
            self._source, self._source_arrays = source, [_np(t) for t in source_inputs(source)]
        inputs = [_np(kp_driving["value"]), _np(kp_driving["jacobian"])] + self._source_arrays
        return torch.from_numpy(self._render(inputs).to_tuple()[0].copy())


# ----------------------------------------------------------------------------------------------------------------
# Building: export, calibrate, quantise, check


def _samples(exact, pairs):
    """Per driving frame: (the frame [1, 3, S, S], the render graph's inputs), from the exact engine."""
    samples = []
    for source, driving in pairs:
        exact.set_source(source)
        kp = exact.keypoints(driving)
        exact._set_reference_kp({k: v[:1] for k, v in kp.items()})
        moved = exact.transfer(kp)
        src = [_np(t) for t in source_inputs(exact._source)]
        for i in range(driving.shape[0]):
            samples.append((_np(driving[i:i + 1]), [_np(moved["value"][i:i + 1]),
                                                    _np(moved["jacobian"][i:i + 1])] + src))
    return samples


def _export(generator, kp_detector, sample):
    """The float32 OpenVINO models of both graphs; the batch dimension is left free."""
    import torch
    ov = _openvino()
    frame, render_inputs = sample
    kp_shape = [ov.PartialShape([-1] + list(frame.shape[1:]))]
    render_shapes = [ov.PartialShape([-1] + list(a.shape[1:])) for a in render_inputs[:2]]
    render_shapes += [ov.PartialShape(list(a.shape)) for a in render_inputs[2:]]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches: shapes are fixed
        kp_model = ov.convert_model(KeypointGraph(kp_detector.eval()), example_input=torch.from_numpy(frame),
                                    input=kp_shape)
        render_model = ov.convert_model(RenderGraph(generator.eval()),
                                        example_input=tuple(torch.from_numpy(a) for a in render_inputs),
                                        input=render_shapes)
    return kp_model, render_model


def _quality(runner, exact, pairs) -> dict:
    """PSNR of the int8 graphs against the exact engine over held-out pairs (and the worst pair's)."""
    import math
    from fomm_core.media.images import psnr
    errors, worst = [], float("inf")
    for source, driving in pairs:
        exact.set_source(source)
        want = exact.animate(driving)
        kp = runner.keypoints(driving)
        exact._set_reference_kp({k: v[:1] for k, v in kp.items()})
        got = runner.render(exact.transfer(kp), exact._source)
        errors.append(float(((got - want) ** 2).mean()))
        worst = min(worst, psnr(got, want))
    mean = sum(errors) / len(errors)
    return {"psnr": float("inf") if mean == 0 else -10 * math.log10(mean), "worst_pair_psnr": worst,
            "held_out_frames": sum(d.shape[0] for _, d in pairs)}


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in str(text))


def cache_folder(fingerprint: str, size: int, versions: dict) -> Path:
    """Where the int8 model of these weights at this size lives for these OpenVINO and NNCF versions, in the int8
    cache folder (made private here). Int8Refused when that folder, or this entry, is a link or someone else's:
    another user could swap the model that runs."""
    name = (f"{fingerprint[:24]}-{int(size)}px-ov{_safe(versions['openvino'])}-nncf{_safe(versions['nncf'])}"
            f"-g{GRAPH_VERSION}")
    try:
        folder = private_dir(user_cache_dir("int8")) / name
        if os.path.lexists(folder):
            check_private(folder, os.lstat(folder))
    except FommError as err:
        raise Int8Refused(str(err)) from None  # the sentence names the folder, why, and what to do
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_verdict(fingerprint: str, size: int, versions: dict) -> dict:
    """What a verdict must say to be this model's: the weights, size, OpenVINO/NNCF and graphs it was built for,
    and the quality bar it was judged by."""
    return {"fingerprint": fingerprint, "size": int(size), "versions": dict(versions), "graph_version": GRAPH_VERSION,
            "min_psnr": MIN_PSNR}


def trusted_verdict(folder: Path, expected: dict):
    """The folder's verdict when it is for `expected` (see expected_verdict) and, when it accepts the model, the
    model files are the ones it lists by sha256; None otherwise (the entry is then rebuilt). Never raises for
    what is on disk: a verdict is data another run, or anyone who could write there, left."""
    verdict = _verdict(folder)
    if not isinstance(verdict, dict) or any(verdict.get(k) != v for k, v in expected.items()):
        return None
    if not isinstance(verdict.get("accepted"), bool) or not isinstance(verdict.get("psnr"), (int, float)):
        return None
    if verdict["accepted"]:
        files = verdict.get("files")
        if not isinstance(files, dict) or sorted(files) != sorted(MODEL_FILES):
            return None
        try:
            if any(_sha256(folder / name) != files[name] for name in MODEL_FILES):
                return None
        except OSError:
            return None
    return verdict


def build(generator, kp_detector, size: int, folder: Path, expected: dict, make_exact, on_step=None) -> dict:
    """Export, quantise and check into `folder` (which must not exist yet); -> the check's verdict, which says
    what it was built for (`expected`, see expected_verdict) and the sha256 of each model file.

    make_exact() -> the exact float32 engine of these networks that calibrates the model and checks it.

    Everything is written to a temporary folder beside it and renamed into place last, so a build that is
    interrupted, fails, or races another process never leaves a half-written model behind.
    """
    from fomm_core.inference.calibration import face_pairs
    step = on_step or (lambda done, total, what: None)
    started = time.perf_counter()
    try:
        ov, nncf = _openvino(), _nncf()
    except Exception as err:  # a broken NNCF install (its metadata was there)
        raise Int8Refused(f"NNCF cannot be imported to build the int8 model ({type(err).__name__}: {err}); "
                          f"reinstall it with: {INSTALL_HINT}") from None
    exact = make_exact()
    step(0, 5, "int8: exact float32 keypoints and features of the calibration faces")
    samples = _samples(exact, face_pairs(size, seed=0, frames=CALIBRATION_FRAMES))
    step(1, 5, "int8: exporting to OpenVINO")
    kp_model, render_model = _export(generator, kp_detector, samples[0])
    step(2, 5, "int8: quantising the keypoint detector")
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's own progress bars: ours is on_step
        kp_model = nncf.quantize(kp_model, nncf.Dataset([s[0] for s in samples]), subset_size=len(samples))
        step(3, 5, "int8: quantising dense motion and generator")
        render_model = nncf.quantize(render_model, nncf.Dataset([s[1] for s in samples]),
                                     subset_size=len(samples))
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))  # 0700, in the private cache folder
    try:
        ov.save_model(kp_model, str(work / "keypoints.xml"))
        ov.save_model(render_model, str(work / "render.xml"))
        files = {name: _sha256(work / name) for name in MODEL_FILES}
        (work / "check.json").write_text("{}", encoding="utf-8")
        step(4, 5, "int8: checking against float32 on held-out faces")
        quality = _quality(Int8Runner(work), exact, face_pairs(size, seed=1, frames=2))
        verdict = dict(quality, accepted=quality["psnr"] >= MIN_PSNR, **expected, files=files,
                       build_seconds=round(time.perf_counter() - started, 1))
        (work / "check.json").write_text(json.dumps(verdict, indent=2), encoding="utf-8")
        try:
            os.rename(work, folder)
        except OSError:  # another process finished the same build first: theirs is as good as ours
            if not (folder / "check.json").is_file():
                raise
        step(5, 5, "int8: ready")
        return verdict
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _verdict(folder: Path):
    try:
        return json.loads((folder / "check.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def refusal(verdict: dict) -> str:
    return (f"the int8 model of these weights scores {verdict['psnr']:.1f} dB PSNR against float32 on held-out "
            f"faces, below the {verdict['min_psnr']:g} dB bar, so it is not used")


def load_or_build(generator, kp_detector, size: int, *, make_exact, threads=None, on_step=None,
                  fingerprint=None) -> Int8Runner:
    """The int8 runner of these weights at this frame size: from the cache, else built (and cached) now, checked
    against the engine make_exact() builds (exact float32 on the same networks).

    Int8Refused (one sentence) when OpenVINO/NNCF are missing, the model has no dense motion or Jacobians,
    or the int8 model fails the quality bar (a verdict that is cached as well, so it is not rebuilt each run).
    """
    reason = supported(generator, kp_detector)
    if reason:
        raise Int8Refused(reason + ".")
    versions = runtime_versions()
    fingerprint = fingerprint or weights_fingerprint(generator, kp_detector)
    folder = cache_folder(fingerprint, size, versions)
    expected = expected_verdict(fingerprint, size, versions)
    verdict = trusted_verdict(folder, expected)
    if verdict is None:  # none yet, damaged, changed, or another model's: rebuilt
        shutil.rmtree(folder, ignore_errors=True)
        verdict = build(generator, kp_detector, size, folder, expected, make_exact, on_step)
    if not verdict.get("accepted"):
        raise Int8Refused(refusal(verdict) + ".")
    try:
        return Int8Runner(folder, threads)
    except Exception as err:  # files damaged after the verdict was written: drop them, the next run rebuilds
        shutil.rmtree(folder, ignore_errors=True)
        raise Int8Refused(f"the cached int8 model in {folder} could not be loaded ({type(err).__name__}); "
                          "it was removed and will be rebuilt on the next run.") from None
