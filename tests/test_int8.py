"""The int8 path (OpenVINO + NNCF) and the measured `fast` choice: real builds, real caches, real fallbacks.

The promise: int8 runs only when its output stays within MIN_PSNR of exact float32 on held-out faces; it is
built once per weights and size, reloaded from the user cache, rebuilt for other weights, never half-written;
when OpenVINO is missing or the quality check fails, another path runs and one sentence says why.
"""
import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(80)  # seconds on 2 cores: run among the first (conftest.py)

torch = pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install '.[openvino]' to test the int8 path")

from conftest import REPO, RUN_CACHE, TINY_MODEL, run_cli, share_int8_build  # noqa: E402
from fomm_core.bench.weights import stress  # noqa: E402
from fomm_core.inference import choice, int8  # noqa: E402
from fomm_core.inference.int8.fomm import FOMM_INT8  # noqa: E402
from fomm_core.inference.calibration import face_pairs  # noqa: E402
from fomm_core.inference.factory import make_animator  # noqa: E402
from fomm_core.inference.fomm import Animator, exact_engine  # noqa: E402
from fomm_core.media.images import psnr  # noqa: E402
from fomm_core.model.checkpoint import Model, load_checkpoints  # noqa: E402
from fomm_core.model.config import build_models  # noqa: E402

SYNTH = REPO / "checkpoints" / "fomm-synth-64.pth.tar"


def tiny(seed=0):
    """TINY_MODEL, seeded, scaled so its picture spans 0..1 (random weights alone give flat grey)."""
    torch.manual_seed(seed)
    generator, kp_detector = build_models(TINY_MODEL)
    stress(generator.eval(), kp_detector.eval())
    return generator, kp_detector


def model(generator, kp_detector):
    return Model("fomm", {"generator": generator, "kp_detector": kp_detector}, TINY_MODEL, "tiny")


def load_or_build(generator, kp_detector, **how):
    """The int8 runner at 64 px, checked against the exact FOMM engine as make_animator checks it."""
    return int8.load_or_build(FOMM_INT8, {"generator": generator, "kp_detector": kp_detector}, 64,
                              make_exact=lambda: exact_engine(generator, kp_detector), **how)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@contextmanager
def shared_build_lock():
    """Held while the run's build of tiny() is made or looked for: both test processes ask at once."""
    import fcntl
    with open(RUN_CACHE / "tiny-int8.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def shared_build() -> Path:
    """The folder of the run's one int8 build of tiny() (seed 0) at 64 px, in the run's cache: made by the build
    test below (published), else by the first test that asks; tests that need a built model copy it."""
    with shared_build_lock(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOMM_DOCTOR_CACHE", str(RUN_CACHE))
        runner = load_or_build(*tiny())
    assert runner.check["accepted"]
    return runner.folder


def with_shared_build(cache: Path) -> Path:
    """cache/int8/ holding a copy of the shared build of tiny() (seed 0), where load_or_build looks for it."""
    built = shared_build()
    shutil.copytree(built, cache / "int8" / built.name)
    return cache / "int8" / built.name


def steps():
    seen = []
    return seen, (lambda done, total, what: seen.append(what))


def stopped(on_step):
    """on_step, then a KeyboardInterrupt: a build stopped at its first step (one that began is all a test needs)."""
    def stop(done, total, what):
        on_step(done, total, what)
        raise KeyboardInterrupt
    return stop


def test_int8_build_is_checked_cached_and_reloaded(cache):
    generator, kp_detector = tiny()
    seen, on_step = steps()
    with shared_build_lock():
        runner = load_or_build(generator, kp_detector, on_step=on_step)
        share_int8_build(runner.folder)   # the run's shared build: the other tests copy this one
    assert any("quantising" in s for s in seen) and seen[-1] == "int8: ready"
    folders = list((cache / "int8").iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    verdict = json.loads((folders[0] / "check.json").read_text())
    assert verdict["accepted"] and verdict["psnr"] >= int8.MIN_PSNR and verdict["held_out_frames"] >= 12
    # its output on a real face, animated as the engine does it, against exact float32
    source, driving = face_pairs(64, seed=5, frames=3, synthetic=0)[0]
    exact = Animator(generator, kp_detector, precision="fp32")
    exact.set_source(source)
    fast = Animator(generator, kp_detector, precision="int8", int8_runner=runner)
    fast.set_source(source)
    assert fast.precision == "int8" and "int8" in fast.path
    assert psnr(fast.animate(driving), exact.animate(driving)) >= int8.MIN_PSNR
    # a cache hit builds nothing
    seen2, on_step2 = steps()
    load_or_build(generator, kp_detector, on_step=on_step2)
    assert seen2 == [] and list((cache / "int8").iterdir()) == folders
    # other weights are another model: their build starts (stopped at its first step; building is tested above)
    seen3, on_step3 = steps()
    with pytest.raises(KeyboardInterrupt):
        load_or_build(*tiny(seed=1), on_step=stopped(on_step3))
    assert seen3 and "int8:" in seen3[0] and list((cache / "int8").iterdir()) == folders


def test_int8_refused_by_the_quality_check_falls_back_with_a_sentence(cache):
    """Our trained 64-px synthetic-face model loses too much in int8 (measured: about 26 dB): refused, cached."""
    generator, kp_detector = load_checkpoints("synth-64", SYNTH, "cpu")
    animator = make_animator(model(generator, kp_detector), precision="int8", size=64)
    assert animator.precision in ("fp32", "bf16")
    assert "below the 35 dB bar" in animator.note and f"using {animator.precision} instead" in animator.note
    verdict = json.loads(next((cache / "int8").iterdir()).joinpath("check.json").read_text())
    assert verdict["accepted"] is False and verdict["psnr"] < int8.MIN_PSNR
    seen, on_step = steps()
    with pytest.raises(int8.Int8Refused, match="below the 35 dB bar"):
        load_or_build(generator, kp_detector, on_step=on_step)
    assert seen == []  # the verdict is cached: no rebuild


def test_without_openvino_int8_says_how_to_install_and_another_path_runs(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    generator, kp_detector = tiny()
    animator = make_animator(model(generator, kp_detector), precision="int8", size=64)
    assert animator.precision in ("fp32", "bf16")
    assert "fomm-doctor[openvino]" in animator.note and "instead" in animator.note


def test_damaged_cache_is_removed_and_rebuilt(cache):
    generator, kp_detector = tiny()
    folder = with_shared_build(cache)
    (folder / "render.xml").write_text("<not a model")
    seen, on_step = steps()
    assert load_or_build(generator, kp_detector, on_step=on_step).check["accepted"]
    assert seen and seen[-1] == "int8: ready"  # its files no longer match the verdict: rebuilt on this run


def test_an_interrupted_build_leaves_nothing_behind(cache, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    # stopped once the model files are written; NNCF's pass is left out (the float32 graphs are saved as they are)
    monkeypatch.setattr(int8, "_quantised", lambda design, models, *args: models)
    monkeypatch.setattr(int8, "_quality", interrupted)
    generator, kp_detector = tiny()
    with pytest.raises(KeyboardInterrupt):
        load_or_build(generator, kp_detector)
    assert list((cache / "int8").iterdir()) == []


def _converted_outputs(monkeypatch, decoder=None):
    """A small network through int8._convert (with this OpenVINO's decoder, or `decoder` in its place), its
    output on a frame beside torch's; torch's check of a trace fails the test if it runs."""
    import openvino as ov
    from openvino.frontend.pytorch import ts_decoder
    if decoder is not None:
        monkeypatch.setattr(ts_decoder, "TorchScriptPythonDecoder", decoder)
    checked = []
    monkeypatch.setattr(torch.jit._trace, "_check_trace", lambda *a, **k: checked.append(1))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    frame = torch.rand(1, 3, 32, 32)
    model = int8._convert(ov, net, frame, [ov.PartialShape([-1, 3, 32, 32])])
    got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(frame.numpy())[0]
    with torch.no_grad():
        return got, net(frame).numpy(), checked


def test_the_export_traces_once_and_converts_the_same_network(monkeypatch):
    got, want, checked = _converted_outputs(monkeypatch)
    assert abs(got - want).max() < 1e-5 and checked == []   # the graph, without torch's second trace and run


def test_an_openvino_whose_decoder_takes_no_trace_options_converts_the_module_itself(monkeypatch):
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    class Decoder(TorchScriptPythonDecoder):  # this OpenVINO's, as it was before it took trace options
        def __init__(self, pt_module, graph_element=None, example_input=None, alias_db=None, shared_memory=True,
                     skip_freeze=False, constant_cache=None, module_extensions=None):
            super().__init__(pt_module, graph_element, example_input, alias_db, shared_memory, skip_freeze,
                             constant_cache, module_extensions)
    got, want, checked = _converted_outputs(monkeypatch, Decoder)
    assert abs(got - want).max() < 1e-5 and checked == [1]   # convert_model traced it, with the check


def test_fast_is_measured_once_and_cached(cache, monkeypatch):
    monkeypatch.setattr(choice, "MAX_SPREAD", float("inf"))   # kept however busy the machine is (tested apart)
    monkeypatch.setattr(choice, "cpu_has_bf16_kernels", lambda: True)  # timed on any CPU: the plumbing is the point
    generator, kp_detector = tiny()
    built = with_shared_build(cache)   # its int8 model (make_animator's key); the measurement is the point here
    first = make_animator(model(generator, kp_detector), precision="fast", size=64)
    assert list((cache / "int8").iterdir()) == [built]   # used, not built again
    assert first.precision in ("fp32", "bf16", "int8") and first.note.startswith(f"fast = {first.precision}")
    names = {row.precision for row in first.choice_table}
    assert names == {"fp32", "bf16", "int8"} and all(row.fps > 0 for row in first.choice_table)
    assert len(list((cache / "fast-path").iterdir())) == 1

    def measure_again(*args, **kwargs):
        raise AssertionError("measured again despite the cache")
    monkeypatch.setattr(choice, "measure", measure_again)
    second = make_animator(model(generator, kp_detector), precision="fast", size=64)
    assert second.precision == first.precision and second.note == first.note


def test_a_table_measured_on_a_busy_machine_is_used_once_and_measured_again(tmp_path, monkeypatch):
    """Rounds of one path that differ by more than MAX_SPREAD (another program took the CPU) give a table that
    runs this time, says why, and is not cached: the next use measures again."""
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))
    busy = [choice.Row("fp32", fps=2.0, spread=1.0), choice.Row("bf16", fps=4.0, psnr=60, spread=2.5)]
    calm = [choice.Row("fp32", fps=2.0, psnr=999.0, spread=1.02), choice.Row("bf16", fps=4.0, psnr=60, spread=1.1)]
    measured = []

    def measure_now(rows):
        measured.append(rows)
        return rows
    assert choice.cached_rows("b" * 16, 64, 2, lambda: measure_now(busy)) == busy
    assert choice.cached_rows("b" * 16, 64, 2, lambda: measure_now(calm)) == calm      # measured again
    assert choice.cached_rows("b" * 16, 64, 2, lambda: measure_now([])) == calm        # now cached
    assert len(measured) == 2
    monkeypatch.setattr(choice, "measure", lambda *a, **k: busy)
    picked = choice.settle("fast", lambda p: None, "c" * 16, 64, threads=2)
    assert picked.precision == "bf16" and "busy, so it is measured again next time" in picked.note


def test_measure_records_how_far_each_paths_rounds_disagree(tiny_checkpoint, monkeypatch):
    from fomm_core.model.checkpoint import load_model
    monkeypatch.setattr(choice, "cpu_has_bf16_kernels", lambda: True)  # timed on any CPU: the plumbing is the point
    model = load_model(tiny_checkpoint)
    rows = choice.measure(lambda p: make_animator(model, precision=p, size=64), ("fp32", "bf16"), 64, rounds=3)
    assert [r.precision for r in rows] == ["fp32", "bf16"]
    assert all(1.0 <= r.spread < float("inf") and r.fps > 0 for r in rows)


@pytest.mark.parametrize("kernels", [False, True])
def test_bf16_is_timed_only_where_this_cpu_has_bf16_kernels(kernels, tiny_checkpoint, cache, monkeypatch):
    """Without kernels bf16 takes up to 300x float32's time (minutes a LivePortrait frame): `fast` builds no bf16
    engine, keeps a row that says why, and says it in its note; with them bf16 is timed as any path."""
    from fomm_core.device import BF16_WITHOUT_KERNELS
    from fomm_core.model.checkpoint import load_model
    monkeypatch.setattr(choice, "MAX_SPREAD", float("inf"))
    monkeypatch.setattr(choice, "cpu_has_bf16_kernels", lambda: kernels)
    model = load_model(tiny_checkpoint)
    built = []

    def make(precision):
        built.append(precision)
        return make_animator(model, precision=precision, size=64)
    picked = choice.settle("fast", make, f"kernels {kernels}", 64, threads=1, batch=1)
    rows = {row.precision: row for row in picked.table}
    assert set(rows) == {"fp32", "bf16"}
    if kernels:
        assert built == ["fp32", "bf16"] and rows["bf16"].fps > 0 and not rows["bf16"].error
        assert rows["fp32"].fps > 0 and "not timed" not in picked.note
    else:   # exact float32 is left alone: nothing is timed, and the note says why
        assert built == ["fp32"] and picked.precision == "fp32"
        assert rows["bf16"].error == choice.NOT_TIMED + BF16_WITHOUT_KERNELS and not rows["bf16"].usable
        assert rows["fp32"].error == choice.NOT_TIMED + choice.ONLY_PATH and rows["fp32"].fps == 0
        assert picked.note == f"fast = fp32: {choice.ONLY_PATH} (bf16 not timed: {BF16_WITHOUT_KERNELS})."


def test_fast_is_measured_fed_as_the_caller_feeds_it_and_cached_per_batch(tiny_checkpoint, cache, monkeypatch):
    """The webcam gives one frame a call, animate four: each is measured fed so, and each table kept apart."""
    from fomm_core.model.checkpoint import load_model
    monkeypatch.setattr(choice, "MAX_SPREAD", float("inf"))
    monkeypatch.setattr(choice, "cpu_has_bf16_kernels", lambda: True)  # timed on any CPU: the plumbing is the point
    model = load_model(tiny_checkpoint)
    fed = []

    def make(precision):
        engine = make_animator(model, precision=precision, size=64)
        animate = engine.animate
        engine.animate = lambda frames: fed.append(frames.shape[0]) or animate(frames)
        return engine
    rows = choice.measure(make, ("fp32", "bf16"), 64, rounds=1, batch=1)
    assert fed and set(fed) == {1} and all(r.fps > 0 for r in rows)
    fed.clear()
    choice.measure(make, ("fp32", "bf16"), 64, rounds=1, batch=8)
    assert fed and set(fed) == {8}                  # a batch larger than the usual four frames: one call
    tables = []
    for batch in (1, 4, 1):
        tables.append(choice.cached_rows("d" * 16, 64, 2, lambda: [choice.Row("fp32", fps=float(len(tables)))],
                                         batch=batch))
    assert [t[0].fps for t in tables] == [0.0, 1.0, 0.0]  # batch 4 measured apart; batch 1 read back
    assert len(list((cache / "fast-path").iterdir())) == 2


@pytest.mark.parametrize("rows, picked", [
    ([("fp32", 2.0, 999), ("bf16", 4.0, 60), ("int8", 11.0, 45)], "int8"),
    ([("fp32", 2.0, 999), ("bf16", 4.0, 60), ("int8", 11.0, 30)], "bf16"),    # int8 fails the bar
    ([("fp32", 2.0, 999), ("bf16", 2.1, 60)], "fp32"),                      # 5 % is not worth leaving exact
    ([("fp32", 2.0, 999), ("bf16", 1.6, 60), ("int8", 0.0, 999, "no OpenVINO")], "fp32"),
    ([("fp32", 0.0, 999, choice.NOT_TIMED + choice.ONLY_PATH), ("bf16", 0.0, 999, choice.NOT_TIMED + "no kernels")],
     "fp32"),
    ([("fp32", 0.0, 999, "out of memory"), ("int8", 0.0, 999, "no OpenVINO")], "fp32"),
    ([], "fp32"),
])
def test_pick_fast(rows, picked):
    precision, why = choice.pick_fast([choice.Row(*r) for r in rows])
    assert precision == picked
    measured = any(r[1] > 0 for r in rows) or any(choice.ONLY_PATH in r[3] for r in rows if len(r) > 3)
    assert why.startswith(f"fast = {picked}") if measured else "no path could be measured" in why


def test_no_usage_statistics_leave_the_machine():
    """OpenVINO's converter and NNCF phone Google Analytics home unless told not to: our import stops both."""
    code = ("from fomm_core.inference.int8 import runtime_versions, _nncf; runtime_versions(); _nncf(); "
            "import sys; import nncf.telemetry.wrapper as w; "
            "print(sys.modules['openvino_telemetry'] is None, type(w.telemetry).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    blocked, nncf_sender = out.stdout.split()
    assert blocked == "True" and nncf_sender != "NNCFTelemetry"  # NNCF's stand-ins: its stub, or a mock


def test_animate_cli_runs_int8_end_to_end(tiny_checkpoint, clip_factory, tmp_path):
    from fomm_core.media.video import iter_frames, probe_video
    import cv2
    import numpy as np
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.full((80, 80, 3), 128, np.uint8))
    clip = clip_factory(frames=10, size=(64, 64))
    out = tmp_path / "out.mp4"
    r = run_cli("animate", photo, clip, "-o", out, "--checkpoint", tiny_checkpoint, "--precision", "int8")
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stderr or "instead" in r.stderr  # the path line, or the sentence of a refusal
    assert len(list(iter_frames(out))) == 10 and probe_video(out).has_audio
