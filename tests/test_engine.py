"""The engine against the original code (exact path, 1e-4) and the fast path against the exact one (PSNR)."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from fomm_core.bench import reference as bench_reference, weights as bench_weights  # noqa: E402
from fomm_core.device import choose_precision  # noqa: E402
from fomm_core.inference.fomm import Animator  # noqa: E402
from fomm_core.errors import FommError  # noqa: E402
from fomm_core.media.images import psnr  # noqa: E402

SIZE, FRAMES = 128, 3


@pytest.fixture(scope="module")
def models():
    return bench_weights.our_models("vox-256")


@pytest.fixture(scope="module")
def data():
    return bench_weights.inputs(SIZE, FRAMES)


@pytest.fixture(scope="module")
def exact_out(models, data):
    animator = Animator(*models, precision="fp32")
    animator.set_source(data[0])
    return animator.animate(data[1])


def test_exact_path_matches_the_original_code(exact_out, data):
    if not bench_reference.reference_available():
        pytest.skip("the reference FOMM code is missing: pip install --no-deps deep-animator")
    reference = bench_reference.reference_animate(*bench_reference.reference_models("vox-256"), *data)
    assert exact_out.shape == reference.shape == (FRAMES, 3, SIZE, SIZE)
    assert exact_out.dtype == torch.float32 and exact_out.device.type == "cpu"
    assert (exact_out - reference).abs().max() <= 1e-4
    assert (reference[1:] - reference[:1]).abs().max() > 1e-3  # the frames really differ: motion is transferred


def test_batches_and_frame_by_frame_agree_and_reference_is_kept(models, data, exact_out):
    animator = Animator(*models, precision="fp32")
    animator.set_source(data[0])
    outs = [animator.animate(data[1][i:i + 1]) for i in range(FRAMES)]  # reference = first frame of the first call
    assert (torch.cat(outs) - exact_out).abs().max() <= 1e-5
    animator.reset_reference()
    animator.set_reference(data[1][1:2])
    shifted = animator.animate(data[1][1:2])
    assert (shifted - exact_out[0:1]).abs().max() <= 1e-5  # same frame as reference -> the source's own pose


def test_absolute_mode_equals_the_generator_forward(models, data):
    generator, kp_detector = models
    animator = Animator(generator, kp_detector, precision="fp32", mode="absolute")
    animator.set_source(data[0])
    out = animator.animate(data[1][:2])
    with torch.inference_mode():
        kp_src = kp_detector(data[0])
        kp_drv = kp_detector(data[1][:2])
        expected = generator(data[0].expand(2, -1, -1, -1), kp_driving=kp_drv,
                             kp_source={k: v.expand(2, *v.shape[1:]) for k, v in kp_src.items()})["prediction"]
    assert (out - expected).abs().max() <= 1e-4


def test_fast_path_agrees_with_exact_path(models, data, exact_out):
    animator = Animator(*models, precision="bf16")
    assert "bf16" in animator.path
    animator.set_source(data[0])
    fast = animator.animate(data[1])
    assert fast.dtype == torch.float32
    assert psnr(fast, exact_out) >= 35


def test_user_modules_are_left_alone(models):
    generator, kp_detector = models
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    Animator(generator, kp_detector)
    after = generator.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(generator.first.norm, torch.nn.BatchNorm2d)


def test_choose_precision_and_bad_options():
    assert choose_precision("cpu", "auto") == "fast"
    assert choose_precision("cpu", "fp16") == "bf16"
    assert choose_precision("cpu", "BF16") == "bf16"
    assert choose_precision("cuda", "auto") == "fp16"
    with pytest.raises(FommError, match="precision"):
        choose_precision("cpu", "int4")
    with pytest.raises(FommError, match="mode"):
        Animator(torch.nn.Identity(), torch.nn.Identity(), mode="sideways")


def test_an_engine_runs_a_settled_precision_only(models):
    for asked in ("fast", "auto"):
        with pytest.raises(FommError, match=f"not '{asked}'; make_animator settles"):
            Animator(*models, precision=asked)
    with pytest.raises(FommError, match="OpenVINO runner"):
        Animator(*models, precision="int8")
    with pytest.raises(FommError, match="avd .* belongs to TPSMM"):
        Animator(*models, mode="avd")


@pytest.fixture(scope="module")
def fomm_model(models):
    from fomm_core.model.checkpoint import Model
    from fomm_core.model.config import load_config
    return Model("fomm", {"generator": models[0], "kp_detector": models[1]}, load_config("vox-256"), "vox-256")


def test_make_animator_builds_the_family_engine_at_the_settled_path(fomm_model, data, exact_out):
    from fomm_core.inference.factory import make_animator
    animator = make_animator(fomm_model, precision="fp32")
    assert type(animator) is Animator and animator.FAMILY == "FOMM" and animator.precision == "fp32"
    assert animator.note == "" and animator.choice_table == [] and animator.path.startswith("cpu fp32 exact")
    animator.set_source(data[0])
    assert (animator.animate(data[1]) - exact_out).abs().max() <= 1e-6
    half = make_animator(fomm_model, precision="fp16", mode="absolute")  # fp16 asked of a CPU runs bf16
    assert (half.precision, half.mode) == ("bf16", "absolute")


def test_make_animator_checks_its_options_before_measuring_anything(fomm_model, monkeypatch):
    from fomm_core.inference import factory
    from fomm_core.model.checkpoint import Model

    def measured(*args, **kwargs):
        raise AssertionError("a path was measured for options that cannot run")
    monkeypatch.setattr(factory, "settle_path", measured)
    with pytest.raises(FommError, match="unknown mode 'sideways' for a FOMM model"):
        factory.make_animator(fomm_model, precision="fast", mode="sideways")
    with pytest.raises(FommError, match="unknown precision 'int4'"):
        factory.make_animator(fomm_model, precision="int4")
    with pytest.raises(FommError, match="unknown device"):
        factory.make_animator(fomm_model, precision="fast", device="gpu")
    other = Model("other", fomm_model.networks, fomm_model.config, "other")
    with pytest.raises(FommError, match="no engine animates other models; .*FOMM, TPSMM and LivePortrait"):
        factory.make_animator(other, precision="fast")


def _tf32_flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def tf32_saved():
    before = _tf32_flags()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("flags", [(True, True), (False, True), (True, False)])
def test_tf32_is_off_inside_the_block_and_restored_after(tf32_saved, flags):
    from fomm_core.inference.engine import tf32_off
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    with tf32_off():
        assert _tf32_flags() == (False, False)
    assert _tf32_flags() == flags
    with pytest.raises(RuntimeError):
        with tf32_off():
            raise RuntimeError("inside")
    assert _tf32_flags() == flags


def test_tf32_off_runs_the_block_where_torch_has_no_switches(monkeypatch):
    import types
    from fomm_core.inference.engine import tf32_off
    monkeypatch.setattr(torch.backends.cuda, "matmul", types.SimpleNamespace())  # no allow_tf32 to read
    ran = []
    with tf32_off():
        ran.append(True)
    assert ran == [True]


def test_the_engine_switches_tf32_only_around_its_own_cuda_calls(tf32_saved, models):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    animator = Animator(*models, precision="fp32")
    assert _tf32_flags() == (True, True)            # building an Animator changes nothing process-wide
    animator.device = torch.device("cuda")          # what the exact path does on a GPU, without one
    with animator._running():
        assert _tf32_flags() == (False, False)
    assert _tf32_flags() == (True, True)
    animator.precision = "fp16"                     # the fast path leaves the user's choice alone
    with animator._running():
        assert _tf32_flags() == (True, True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_subpixel_up_block_equals_upsample_then_conv(channels_last):
    from fomm_core.model.blocks import UpBlock2d
    from fomm_core.inference.fusion import fused_copy, SubpixelUpBlock
    torch.manual_seed(0)
    block = UpBlock2d(6, 5).eval()
    with torch.no_grad():
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 1.5)
        block.norm.bias.normal_()
    x = torch.randn(2, 6, 7, 9)
    fast = fused_copy(block, channels_last=channels_last)
    assert isinstance(fast, SubpixelUpBlock)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = block(x), fast(x)
    assert got.shape == expected.shape == (2, 5, 14, 18)
    assert (got - expected).abs().max() <= 1e-5
