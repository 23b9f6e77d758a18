"""The int8 path: a family's per-frame work run by OpenVINO with int8 weights and activations (NNCF quantisation).

    runner = load_or_build(FOMM_INT8, networks, size, make_exact=lambda: exact_engine(generator, kp_detector),
                           threads=2, on_step=print)   # Int8Refused: why not (designs: int8/fomm.py, int8/tpsmm.py)
    kp = runner.keypoints(frames)              # frames [B, 3, S, S] -> the family's keypoints
    out = runner.render(kp_moved, source)      # keypoints to animate with + the engine's cached source -> frames

A family's int8 build is a Design: the graphs it exports over its networks (the source's own encoding stays with
the engine, once), which of them are quantised (the others run in OpenVINO float32, the same numbers as torch), how
calibration inputs are taken from its exact engine, and its runner (keypoints and render over the compiled graphs).
Everything else is here, for every family: export, calibration, the check against float32, the cache.
Why it is built this way (measured side by side with the original code; see the bench):
- OpenVINO, not ONNX Runtime: ONNX Runtime's int8 ran slower than its own float32; OpenVINO's int8 was 4.9x the
  original FOMM code on an Intel Xeon without AMX and about 8x on an AMD EPYC with AVX512-BF16.
- Inference precision is set to f32: on CPUs with AVX512-BF16 or AMX OpenVINO's default is bf16, which changes
  the numbers and was slower than f32 where the CPU has no AMX. Graphs are saved with float32 weights.
- The unfused modules are exported: OpenVINO folds batch-norm itself, while our sub-pixel up block (fusion.py)
  becomes a slow ScatterNDUpdate. Matrix inverses do not export: FOMM's 2x2 ones are closed-form, TPSMM's
  thin-plate-spline solve stays in torch and the graph takes its warps.
- Calibrated on frames of several faces shipped with the package (never the clip being animated) and checked on
  held-out pairs against the exact float32 engine: below MIN_PSNR the model is refused with a sentence. The model
  and the verdict are cached in the user cache folder, keyed by the family, a hash of the weights, the frame size
  and the OpenVINO and NNCF versions; a cached model loads in about a second.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fomm_core.cache import user_cache_dir
from fomm_core.errors import FommError
from fomm_core.private import check_private, private_dir

MIN_PSNR = 35.0          # dB against the exact float32 path, on held-out faces
CALIBRATION_FRAMES = 2  # per face pair: 12 pairs, 24 frames (48 took twice as long and scored the same)
GRAPH_VERSION = 1        # a design's default; it bumps its own when its graphs change (old cached models are rebuilt)
INSTALL_HINT = 'pip install "fomm-doctor[openvino]"'


class Int8Refused(FommError):
    """The int8 path cannot run here, or fails the quality bar; the message says which, in one sentence."""


@dataclass(frozen=True)
class Design:
    """One family's int8 build (the designs: fomm_core.inference.int8.fomm and .tpsmm)."""
    family: str          # names its cache entries (FOMM's: '', so entries built before keep their names)
    names: tuple         # its graphs, in running order; each is saved as NAME.xml and NAME.bin
    quantised: tuple     # the graphs given int8 weights and activations; the others run in OpenVINO float32
    free_batch: dict     # graph name -> how many of its first inputs have a free batch dimension (the rest: fixed)
    graphs: Callable     # networks -> {name: nn.Module} to export (unfused, eval)
    samples: Callable    # (exact engine, face pairs) -> one {name: [its inputs as float32 arrays]} per driving frame
    runner: type         # Int8Runner subclass: keypoints(frames), render(kp, source)
    supported: Callable = lambda networks: ""  # '' when the int8 path can run these networks, else why not
    keep_float: dict = field(default_factory=dict)  # graph name -> node name patterns (re) left in float32
    graph_version: int = GRAPH_VERSION  # names its cache entries and verdicts: models built by an older design rebuild

    def files(self) -> tuple:
        return tuple(f"{name}.{ext}" for name in self.names for ext in ("xml", "bin"))


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


def np_array(tensor):
    """A torch tensor as the float32 C-contiguous numpy array a compiled graph takes."""
    return tensor.detach().float().contiguous().cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------
# Running a built model


def _compile_options(threads) -> dict:
    # f32 explicitly: OpenVINO's CPU default is bf16 where the CPU has AVX512-BF16 or AMX
    # not CPU_DENORMALS_OPTIMIZATION: 2-7 % faster here, but it sets flush-to-zero for the whole process (numpy,
    # torch and the user's own code lose subnormal floats), as hypothesis noticed
    options = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = int(threads)
    return options


class Int8Runner:
    """The compiled graphs of one model at one frame size; a family's subclass runs them as its engine's keypoints
    and render (float32 torch tensors in and out, CPU)."""

    def __init__(self, design: Design, folder: Path, threads=None):
        core = _openvino().Core()
        options = _compile_options(threads)
        self.folder = Path(folder)
        self.graphs = {name: core.compile_model(str(self.folder / f"{name}.xml"), "CPU", options)
                       for name in design.names}
        self.check = json.loads((self.folder / "check.json").read_text(encoding="utf-8"))

    def run(self, name, inputs) -> list:
        """The graph's outputs as numpy arrays the caller owns."""
        return [a.copy() for a in self.graphs[name](inputs).to_tuple()]

    def keypoints(self, frames) -> dict:
        raise NotImplementedError

    def render(self, kp, source):
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------------
# Building: export, calibrate, quantise, check


def _one(inputs):
    """A graph's inputs as convert_model, NNCF and a compiled model take them: one array alone, several as a list."""
    return inputs[0] if len(inputs) == 1 else inputs


def _export(design: Design, networks, sample) -> dict:
    """The float32 OpenVINO models of the design's graphs; the batch dimension of the first free_batch inputs of
    each is left free."""
    import torch
    ov = _openvino()
    modules = design.graphs(networks)
    models = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches: shapes are fixed
        for name in design.names:
            arrays = sample[name]
            free = design.free_batch[name]
            shapes = [ov.PartialShape(([-1] if i < free else [a.shape[0]]) + list(a.shape[1:]))
                      for i, a in enumerate(arrays)]
            example = tuple(torch.from_numpy(a) for a in arrays)
            models[name] = _convert(ov, modules[name], example[0] if len(example) == 1 else example, shapes)
    return models


def _convert(ov, module, example, shapes):
    """convert_model of the module traced on `example`, without torch's check of the trace: a second trace and
    run compared with the first, which changes nothing in the graph kept (FOMM's saved models are byte for byte the
    same, TPSMM's but for OpenVINO's generated node names) and cost 7 % of a FOMM build, 9 % of a TPSMM one. Where
    this OpenVINO's decoder takes no trace options, convert_model traces the module itself, with the check."""
    try:
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder
        decoder = TorchScriptPythonDecoder(module, example_input=example, trace_kwargs={"check_trace": False})
    except (ImportError, TypeError):
        return ov.convert_model(module, example_input=example, input=shapes)
    return ov.convert_model(decoder, input=shapes)


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


def _quantised(design: Design, models: dict, samples: list, nncf, step, total: int) -> dict:
    """The exported models with the design's quantised graphs given int8 weights and activations by NNCF,
    calibrated on `samples`."""
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's own progress bars: ours is on_step
        for i, name in enumerate(design.quantised):
            step(2 + i, total, f"int8: quantising {name}")
            keep = design.keep_float.get(name)
            models[name] = nncf.quantize(models[name], nncf.Dataset([_one(s[name]) for s in samples]),
                                         subset_size=len(samples),
                                         ignored_scope=nncf.IgnoredScope(patterns=list(keep)) if keep else None)
    return models


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in str(text))


def cache_folder(fingerprint: str, size: int, versions: dict, family: str = "",
                 graph_version: int = GRAPH_VERSION) -> Path:
    """Where the int8 model of these weights at this size lives for these OpenVINO and NNCF versions, in the int8
    cache folder (made private here). Int8Refused when that folder, or this entry, is a link or someone else's:
    another user could swap the model that runs."""
    name = (f"{_safe(family) + '-' if family else ''}{fingerprint[:24]}-{int(size)}px-ov{_safe(versions['openvino'])}"
            f"-nncf{_safe(versions['nncf'])}-g{int(graph_version)}")
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


def expected_verdict(fingerprint: str, size: int, versions: dict, graph_version: int = GRAPH_VERSION) -> dict:
    """What a verdict must say to be this model's: the weights, size, OpenVINO/NNCF and graphs it was built for,
    and the quality bar it was judged by."""
    return {"fingerprint": fingerprint, "size": int(size), "versions": dict(versions), "graph_version": int(graph_version),
            "min_psnr": MIN_PSNR}


def trusted_verdict(folder: Path, expected: dict, files: tuple):
    """The folder's verdict when it is for `expected` (see expected_verdict) and, when it accepts the model, the
    model `files` (Design.files) are the ones it lists by sha256; None otherwise (the entry is then rebuilt). Never
    raises for what is on disk: a verdict is data another run, or anyone who could write there, left."""
    verdict = _verdict(folder)
    if not isinstance(verdict, dict) or any(verdict.get(k) != v for k, v in expected.items()):
        return None
    if not isinstance(verdict.get("accepted"), bool) or not isinstance(verdict.get("psnr"), (int, float)):
        return None
    if verdict["accepted"]:
        listed = verdict.get("files")
        if not isinstance(listed, dict) or sorted(listed) != sorted(files):
            return None
        try:
            if any(_sha256(folder / name) != listed[name] for name in files):
                return None
        except OSError:
            return None
    return verdict


def build(design: Design, networks, size: int, folder: Path, expected: dict, make_exact, on_step=None) -> dict:
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
    total = 4 + len(design.quantised)
    exact = make_exact()
    step(0, total, "int8: exact float32 inputs of the calibration faces")
    samples = design.samples(exact, face_pairs(size, seed=0, frames=CALIBRATION_FRAMES))
    step(1, total, "int8: exporting to OpenVINO")
    models = _quantised(design, _export(design, networks, samples[0]), samples, nncf, step, total)
    _remove_abandoned_builds(folder.parent)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))  # 0700, in the private cache folder
    try:
        for name in design.names:
            ov.save_model(models[name], str(work / f"{name}.xml"), compress_to_fp16=False)
        files = {name: _sha256(work / name) for name in design.files()}
        (work / "check.json").write_text("{}", encoding="utf-8")
        step(total - 2, total, "int8: checking against float32 on held-out faces")
        quality = _quality(design.runner(design, work), exact, face_pairs(size, seed=1, frames=2))
        verdict = dict(quality, accepted=quality["psnr"] >= MIN_PSNR, **expected, files=files,
                       build_seconds=round(time.perf_counter() - started, 1))
        (work / "check.json").write_text(json.dumps(verdict, indent=2), encoding="utf-8")
        try:
            os.rename(work, folder)
        except OSError:  # another process finished the same build first: theirs is as good as ours
            if not (folder / "check.json").is_file():
                raise
        step(total, total, "int8: ready")
        return verdict
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_abandoned_builds(cache: Path, older_than: float = 3600.0) -> None:
    """Building folders a process left when it was killed mid-build (live exits while its fast path is still
    being built in the background); an hour is far past any build, so a build under way is never touched."""
    for work in cache.glob(".building-*"):
        try:
            if time.time() - work.lstat().st_mtime > older_than and not work.is_symlink():
                shutil.rmtree(work, ignore_errors=True)
        except OSError:
            pass


def _verdict(folder: Path):
    try:
        return json.loads((folder / "check.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def refusal(verdict: dict) -> str:
    return (f"the int8 model of these weights scores {verdict['psnr']:.1f} dB PSNR against float32 on held-out "
            f"faces, below the {verdict['min_psnr']:g} dB bar, so it is not used")


def load_or_build(design: Design, networks: dict, size: int, *, make_exact, threads=None, on_step=None,
                  fingerprint=None) -> Int8Runner:
    """The int8 runner of these networks at this frame size: from the cache, else built (and cached) now, checked
    against the engine make_exact() builds (exact float32 on the same networks).

    Int8Refused (one sentence) when OpenVINO/NNCF are missing, the design cannot run these networks, or the int8
    model fails the quality bar (a verdict that is cached as well, so it is not rebuilt each run).
    """
    reason = design.supported(networks)
    if reason:
        raise Int8Refused(reason + ".")
    versions = runtime_versions()
    fingerprint = fingerprint or weights_fingerprint(*(networks[k] for k in sorted(networks) if networks[k] is not None))
    folder = cache_folder(fingerprint, size, versions, design.family, design.graph_version)
    expected = expected_verdict(fingerprint, size, versions, design.graph_version)
    verdict = trusted_verdict(folder, expected, design.files())
    if verdict is None:  # none yet, damaged, changed, or another model's: rebuilt
        shutil.rmtree(folder, ignore_errors=True)
        verdict = build(design, networks, size, folder, expected, make_exact, on_step)
    if not verdict.get("accepted"):
        raise Int8Refused(refusal(verdict) + ".")
    try:
        return design.runner(design, folder, threads)
    except Exception as err:  # files damaged after the verdict was written: drop them, the next run rebuilds
        shutil.rmtree(folder, ignore_errors=True)
        raise Int8Refused(f"the cached int8 model in {folder} could not be loaded ({type(err).__name__}); "
                          "it was removed and will be rebuilt on the next run.") from None
