"""LivePortrait's speed transforms (fomm_core.inference.fusion) against the modules they replace, and the engine's
paths against each other.

The blocks are checked on small random modules; the fused G and W on the original code's networks with their
seeded random weights (fomm_core.bench.liveportrait_reference, as the bench and the equivalence tests use them),
loaded into ours. The engine: the exact path keeps M and W as published and only re-associates G (frames within
3e-5 of the unfused engine's), every path reads keypoints in float32, bf16 holds the PSNR bar `fast` is judged by,
and `fast` is settled for a LivePortrait model by the same measurement as the other families.
"""
import pytest

pytestmark = pytest.mark.slow(25)  # seconds on 2 cores: run among the first (conftest.py)

torch = pytest.importorskip("torch", reason="torch is not installed")

import torch.nn.functional as F  # noqa: E402

from fomm_core.inference.factory import make_animator  # noqa: E402
from fomm_core.inference.fusion import (FusedSpadeDecoder, PlanePool, SpadeActivations,  # noqa: E402
                                        SubpixelUpBlock3d, fold_bn, fused_warping)
from fomm_core.device import cpu_has_bf16_kernels  # noqa: E402
from fomm_core.inference.int8 import MIN_PSNR  # noqa: E402
from fomm_core.inference.liveportrait import LivePortraitAnimator  # noqa: E402
from fomm_core.media.images import psnr  # noqa: E402
from fomm_core.model.checkpoint import load_model  # noqa: E402
from fomm_core.model.liveportrait.blocks import UpBlock3d  # noqa: E402
from fomm_core.model.liveportrait.loading import load_networks  # noqa: E402
from fomm_core.model.liveportrait.spade_generator import SPADE  # noqa: E402
from liveportrait_oracle import (driving_frames, load_reference, needs_bf16_kernels,  # noqa: E402
                                 published_states, seeded_networks, seeded_set, source_picture, worst)

CL3D = torch.channels_last_3d


def _random_bn(block):
    with torch.no_grad():
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 1.5)
        block.norm.bias.normal_()
    return block.eval()


# ----------------------------------------------------------------------------------------------------------------
# The blocks


@pytest.mark.parametrize("memory", [torch.contiguous_format, CL3D])
def test_subpixel_up_block_3d_equals_upsample_then_conv(memory):
    torch.manual_seed(0)
    block = _random_bn(UpBlock3d(6, 5))
    fast = SubpixelUpBlock3d(fold_bn(block.conv, block.norm))
    x = torch.randn(2, 6, 3, 5, 7).contiguous(memory_format=memory)
    with torch.inference_mode():
        expected, got = block(x), fast(x)
    assert got.shape == expected.shape == (2, 5, 3, 10, 14)
    assert got.is_contiguous(memory_format=memory)
    assert worst(got, expected) <= 1e-5 and expected.abs().max() > 0.5


@pytest.mark.parametrize("memory", [torch.contiguous_format, CL3D])
def test_plane_pool_sums_what_avg_pool3d_sums(memory):
    x = torch.randn(2, 4, 3, 6, 8).contiguous(memory_format=memory)
    got = PlanePool()(x)
    assert torch.equal(got, F.avg_pool3d(x, (1, 2, 2))) and got.is_contiguous(memory_format=memory)


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("memory", [torch.contiguous_format, torch.channels_last])
def test_spade_activations_equal_each_norms_conv_of_the_resized_layout(scale, memory):
    torch.manual_seed(1)
    norms = [SPADE(8, 6).eval() for _ in range(3)]
    layout = torch.randn(1, 6, 5, 7)
    with torch.inference_mode():
        resized = F.interpolate(layout, scale_factor=scale, mode="nearest")
        expected = torch.cat([norm.mlp_shared(resized) for norm in norms])       # [3, 128, 5s, 7s]
        got = SpadeActivations([norm.mlp_shared[0] for norm in norms], scale)(
            layout.contiguous(memory_format=memory))
    assert got.shape == expected.shape == (3, 128, 5 * scale, 7 * scale)
    assert worst(got, expected) <= 1e-5 and (expected > 0).float().mean() > 0.2


# ----------------------------------------------------------------------------------------------------------------
# G and W on the original's seeded weights


@pytest.fixture(scope="module")
def ref():
    return load_reference()


@pytest.fixture(scope="module")
def networks(ref):
    """Our five networks holding the original's seeded random weights."""
    return load_networks(published_states(seeded_networks(ref)))


@pytest.fixture(scope="module")
def warped(networks):
    """W's output for a 128-px source (a 32x32 volume, the smallest W's hourglass takes) and moved keypoints."""
    gen = torch.Generator().manual_seed(3)
    kp_s = 0.6 * torch.rand(1, 21, 3, generator=gen) - 0.3
    kp_d = kp_s + 0.05 * torch.randn(1, 21, 3, generator=gen)
    with torch.inference_mode():
        volume = networks["appearance_feature_extractor"](source_picture(128))      # [1, 32, 16, 32, 32]
        return volume, kp_d, kp_s, networks["warping_module"](volume, kp_d, kp_s)


def test_fused_generator_is_g_reassociated(networks, warped):
    """Within float rounding of G's (the exact path's 1e-4 bar has room for W's bit-exactness to spend none);
    all of it channels-last rounds worse, bf16 keeps the PSNR bar with room."""
    generator = networks["spade_generator"]
    features = torch.cat([warped[3]["out"][:, :, :16, :16], warped[3]["out"][:, :, 16:, 16:]])  # [2, 256, 16, 16]
    exact, fast = FusedSpadeDecoder(generator), FusedSpadeDecoder(generator, channels_last=(0, 1, 2))
    half = FusedSpadeDecoder(generator, channels_last=(0, 1, 2)).to(torch.bfloat16)
    with torch.inference_mode():
        expected = generator(features)                                             # [2, 3, 128, 128]
        got = exact(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rough = half(features.bfloat16()).float()
        assert got.shape == expected.shape == (2, 3, 128, 128)
        assert worst(got, expected) < 2e-5 and worst(fast(features), expected) < 1e-4
        assert psnr(rough, expected) > MIN_PSNR + 5
        assert torch.equal(exact(features[1:]), got[1:])                           # a batch is frame by frame
    assert expected.std() > 0.05 and worst(expected[0], expected[1]) > 0.1


def test_fused_warping_is_w_within_rounding_and_casts_its_weights_once(networks, warped):
    """Folded and sub-pixel in float32 it moves the flow by rounding only (the frames by ~1e-4 once the warp
    amplifies it, which is why the exact path keeps W as published); bf16 keeps the flow within 1e-2."""
    volume, kp_d, kp_s, expected = warped
    warping = networks["warping_module"]
    half = fused_warping(warping, torch.bfloat16)
    assert half.dense_motion_network.mask.weight.dtype == torch.bfloat16
    assert sum(isinstance(m, SubpixelUpBlock3d) for m in half.modules()) == 3   # inputs 8, 16, 32 wide at 256 px
    with torch.inference_mode():
        got = fused_warping(warping)(volume, kp_d, kp_s)
    assert worst(got["deformation"], expected["deformation"]) < 1e-5
    # AVX2-only kernels sum W's convolutions in another order than AVX-512's: on an AMD EPYC Zen 3 the occlusion
    # map moves by 1.9e-5 and the warped features by 1.8e-5 of their largest value, on a Zen 4 by under 1e-5 each
    assert worst(got["occlusion_map"], expected["occlusion_map"]) < 4e-5
    assert worst(got["out"], expected["out"]) < 4e-5 * expected["out"].abs().max()
    assert expected["deformation"].std() > 0.1 and expected["occlusion_map"].std() > 0.05


def test_fused_warping_in_bf16_keeps_the_flow_in_float32_within_1e_2(networks, warped):
    needs_bf16_kernels()
    volume, kp_d, kp_s, expected = warped
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        rough = fused_warping(networks["warping_module"], torch.bfloat16)(volume, kp_d, kp_s)
    assert worst(rough["deformation"], expected["deformation"]) < 1e-2
    assert rough["deformation"].dtype == torch.float32                               # the flow stays float32


# ----------------------------------------------------------------------------------------------------------------
# The engine's paths


@pytest.fixture(scope="module")
def model(ref):
    return load_model(seeded_set(ref))


def _animated(model, frames, **options):
    animator = LivePortraitAnimator(model.networks, **options)
    animator.set_source(source_picture(frames.shape[-1]))
    animator.set_reference(frames[:1])
    return animator, animator.animate(frames[1:])


@pytest.fixture(scope="module")
def exact_frames(model):
    """(driving frames, the exact path's animator and its frames 1..) at 128 px (the engine takes any side W's
    hourglass does): the paths' parts and rounding are the point, and a frame costs a quarter of 256's."""
    frames = driving_frames(n=2, size=128)
    return (frames, *_animated(model, frames, precision="fp32"))


def test_exact_path_keeps_m_and_w_as_published_and_every_path_reads_keypoints_in_float32(model, exact_frames):
    frames, exact, got = exact_frames
    _, expected = _animated(model, frames, precision="fp32", fuse=False)
    assert exact.warping is model.networks["warping_module"] and exact.motion is model.networks["motion_extractor"]
    assert isinstance(exact.generator, FusedSpadeDecoder) and "M and W as published" in exact.path
    assert worst(got, expected) < 4e-5 and expected.std() > 0.05   # 2.6e-5 on a Zen 3 (above), under 2e-5 on a Zen 4
    fast = LivePortraitAnimator(model.networks, precision="bf16")
    with torch.inference_mode():
        kp = {name: a._torch_keypoints(frames) for name, a in (("fp32", exact), ("bf16", fast))}
    assert all(torch.equal(kp["fp32"][key], kp["bf16"][key]) for key in kp["fp32"])  # M in float32 on every path
    fast.precision = "fp32"                      # what the engine does when a GPU's half precision fails
    fast.set_source(source_picture(frames.shape[-1]))
    fast.set_reference(frames[:1])
    assert torch.equal(fast.animate(frames[1:]), got) and "M and W as published" in fast.path


def test_bf16_path_keeps_the_bar_in_float32_frames(model, exact_frames):
    """What `--precision bf16` builds (the factory's engine) against the exact path: the PSNR bar `fast` judges
    by, random weights amplifying the rounding more than trained ones."""
    needs_bf16_kernels()
    frames, _, got = exact_frames
    fast = make_animator(model, precision="bf16")
    assert fast.precision == "bf16" and "bf16" in fast.path
    fast.set_source(source_picture(frames.shape[-1]))
    fast.set_reference(frames[:1])
    rough = fast.animate(frames[1:])
    assert rough.shape == got.shape and rough.dtype == torch.float32 and psnr(rough, got) >= MIN_PSNR


def test_fast_is_measured_for_a_liveportrait_model(model, tmp_path, monkeypatch):
    """`fast` runs the family's measurement (fp32 and bf16 on shipped faces, here at 128 px) and keeps what it
    picks: bf16 only where it meets the PSNR bar and beats float32 by the margin. Where bf16 has no kernels,
    exact float32 is the only candidate and nothing is timed."""
    import functools
    from fomm_core.inference import choice
    from fomm_core.inference.choice import FASTER_BY, pick_fast
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path))
    # one timed round after the warm-up (the product times two): the family's table is the point here, a frame
    # costs a second, and rounds are tested on a small model in tests/test_int8.py
    monkeypatch.setattr(choice, "measure", functools.partial(choice.measure, rounds=1))
    animator = make_animator(model, precision="fast", size=128)
    rows = {row.precision: row for row in animator.choice_table}
    assert set(rows) == {"fp32", "bf16"}
    if cpu_has_bf16_kernels():
        assert rows["fp32"].fps > 0 and not rows["fp32"].error
        assert rows["bf16"].fps > 0 and not rows["bf16"].error and rows["bf16"].psnr >= MIN_PSNR
    else:   # minutes a frame here: not timed, and the row says why (tests/test_int8.py); fp32 alone is not timed
        assert rows["bf16"].error.startswith(choice.NOT_TIMED) and animator.precision == "fp32"
        assert rows["fp32"].error == choice.NOT_TIMED + choice.ONLY_PATH and choice.ONLY_PATH in animator.note
    assert animator.precision == pick_fast(animator.choice_table)[0]
    if animator.precision == "bf16":
        assert rows["bf16"].fps >= FASTER_BY * rows["fp32"].fps
    assert animator.note
