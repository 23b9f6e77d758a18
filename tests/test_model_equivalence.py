"""Our FOMM networks against the original code (deep-animator's copy), on the same random weights.

The reference runs with grid_sample forced to align_corners=True, the behaviour of torch 1.0 that the published
checkpoints were trained with (today's default is False). Weights are seeded random, batch-norm statistics and the
(zero-initialised) Jacobian head randomised too, so that any difference in the maths shows.
"""
import types

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
F = torch.nn.functional

from fomm_core.bench.weights import randomise  # noqa: E402
from fomm_core.model.config import build_models, load_config, shipped_configs  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    """The reference modules, with grid_sample patched to align_corners=True in their own namespaces."""
    generator = pytest.importorskip(
        "deep_animator.modules.generator",
        reason="the reference FOMM code is missing: pip install --no-deps deep-animator")
    kp_detector = pytest.importorskip("deep_animator.modules.kp_detector")
    dense_motion = pytest.importorskip("deep_animator.modules.dense_motion")
    return types.SimpleNamespace(generator=generator, kp_detector=kp_detector, dense_motion=dense_motion)


def _functional_with_grid_sample(align_corners):
    def grid_sample(*args, **kwargs):
        kwargs.setdefault("align_corners", align_corners)
        return F.grid_sample(*args, **kwargs)
    proxy = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    proxy.grid_sample = grid_sample
    return proxy


@pytest.fixture
def ref_aligned(ref, monkeypatch):
    for module in (ref.generator, ref.dense_motion):
        monkeypatch.setattr(module, "F", _functional_with_grid_sample(True))
    return ref


def reference_models(ref, config):
    from fomm_core.model.config import original_model_params
    params = original_model_params(config)
    generator = ref.generator.OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    kp_detector = ref.kp_detector.KPDetector(**params["kp_detector_params"], **params["common_params"])
    return generator, kp_detector


def twin_models(ref, config, seed=0):
    """(reference generator, kp detector, ours generator, kp detector), same weights, eval mode."""
    ref_gen, ref_kp = reference_models(ref, config)
    randomise(ref_gen, ref_kp, seed=seed)
    gen, kp = build_models(config)
    gen.load_state_dict(ref_gen.state_dict(), strict=True)
    kp.load_state_dict(ref_kp.state_dict(), strict=True)
    for m in (ref_gen, ref_kp, gen, kp):
        m.eval()
    return ref_gen, ref_kp, gen, kp


def small_config(**overrides):
    """A cheap config exercising the same code paths as the published ones."""
    common = {"num_kp": 5, "num_channels": 3, "estimate_jacobian": True}
    kp_params = {"temperature": 0.1, "block_expansion": 8, "max_features": 64, "scale_factor": 0.25, "num_blocks": 3}
    gen_params = {"block_expansion": 8, "max_features": 32, "num_down_blocks": 2, "num_bottleneck_blocks": 2,
                  "estimate_occlusion_map": True,
                  "dense_motion_params": {"block_expansion": 8, "max_features": 64, "num_blocks": 3,
                                          "scale_factor": 0.25}}
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        {"common": common, "kp": kp_params, "gen": gen_params}[section][name] = value
    return {"model_params": {"common_params": common, "kp_detector_params": kp_params,
                             "generator_params": gen_params}}


def max_diff(a, b):
    return (a - b).abs().max().item()


def assert_same_outputs(ref_gen, ref_kp, gen, kp, source, driving):
    with torch.no_grad():
        ref_src, ref_drv = ref_kp(source), ref_kp(driving)
        src, drv = kp(source), kp(driving)
        assert set(src) == set(ref_src)
        for key in ref_src:
            assert max_diff(src[key], ref_src[key]) <= TOL, key
            assert max_diff(drv[key], ref_drv[key]) <= TOL, key
        # feed both generators the same keypoints so each comparison isolates the generator
        ref_out = ref_gen(source, kp_driving=ref_drv, kp_source=ref_src)
        out = gen(source, kp_driving=ref_drv, kp_source=ref_src)
    for key in ref_out:
        assert out[key].shape == ref_out[key].shape, key
        assert max_diff(out[key], ref_out[key]) <= TOL, key
    return out, ref_out


# variant -> (config overrides, frame size); sizes are non-square on purpose
SMALL_VARIANTS = {
    "published-like": ({}, (64, 96)),
    "single-jacobian-map": ({"kp__single_jacobian_map": True}, (64, 96)),
    "no-jacobian": ({"common__estimate_jacobian": False}, (64, 96)),
    "no-occlusion": ({"gen__estimate_occlusion_map": False}, (64, 96)),
    # dense motion at full size: the flow and occlusion map are resized to the feature map
    "full-scale-motion": ({"kp__scale_factor": 1, "gen__dense_motion_params": {
        "block_expansion": 8, "max_features": 32, "num_blocks": 2, "scale_factor": 1}}, (64, 96)),
    # 1/0.3 is no integer: the anti-alias filter takes the interpolate path
    "odd-scale-one-channel": ({"common__num_channels": 1, "kp__scale_factor": 0.3, "gen__dense_motion_params": {
        "block_expansion": 8, "max_features": 64, "num_blocks": 2, "scale_factor": 0.25}}, (80, 160)),
}


@pytest.mark.parametrize("variant", sorted(SMALL_VARIANTS))
def test_small_models_match_reference(ref_aligned, variant):
    overrides, (h, w) = SMALL_VARIANTS[variant]
    config = small_config(**overrides)
    channels = config["model_params"]["common_params"]["num_channels"]
    ref_gen, ref_kp, gen, kp = twin_models(ref_aligned, config, seed=1)
    gen_input = torch.Generator().manual_seed(2)
    source = torch.rand(2, channels, h, w, generator=gen_input)
    driving = torch.rand(2, channels, h, w, generator=gen_input)
    out, _ = assert_same_outputs(ref_gen, ref_kp, gen, kp, source, driving)
    assert out["prediction"].shape == (2, channels, h, w)


def test_vox_256_full_size_matches_reference(ref_aligned):
    ref_gen, ref_kp, gen, kp = twin_models(ref_aligned, load_config("vox-256"), seed=3)
    gen_input = torch.Generator().manual_seed(4)
    source = torch.rand(1, 3, 256, 256, generator=gen_input)
    driving = torch.rand(1, 3, 256, 256, generator=gen_input)
    out, ref_out = assert_same_outputs(ref_gen, ref_kp, gen, kp, source, driving)
    assert out["prediction"].shape == (1, 3, 256, 256)
    assert out["deformation"].shape == (1, 64, 64, 2)
    assert out["sparse_deformed"].shape == (1, 11, 3, 64, 64)
    # the jacobians were randomised: a test that ignored them could not pass this
    with torch.no_grad():
        jac = kp(source)["jacobian"]
    assert max_diff(jac, torch.eye(2).expand_as(jac)) > 1e-3


def test_the_align_corners_patch_matters(ref):
    """Without the patch the reference differs from ours: the comparison above can see the setting."""
    config = small_config()
    ref_gen, ref_kp, gen, kp = twin_models(ref, config, seed=5)
    gen_input = torch.Generator().manual_seed(6)
    source, driving = torch.rand(2, 1, 3, 64, 64, generator=gen_input)
    with torch.no_grad():
        kp_src, kp_drv = kp(source), kp(driving)
        ours = gen(source, kp_driving=kp_drv, kp_source=kp_src)["prediction"]
        today = ref_gen(source, kp_driving=kp_drv, kp_source=kp_src)["prediction"]  # align_corners=False
    assert max_diff(ours, today) > 1e-6


def test_composed_parts_equal_forward():
    """encode_source / motion / decode (for engines that cache the source) give forward's prediction."""
    gen, kp = build_models(small_config())
    randomise(gen, kp, seed=7)
    gen.eval(), kp.eval()
    source, driving = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        kp_src, kp_drv = kp(source), kp(driving)
        full = gen(source, kp_driving=kp_drv, kp_source=kp_src)
        motion = gen.motion(source, kp_drv, kp_src)
        parts = gen.decode(gen.encode_source(source), motion["deformation"], motion["occlusion_map"])
    assert torch.equal(parts, full["prediction"])


def test_strided_antialias_equals_blur_then_slice():
    from fomm_core.model.blocks import AntiAliasInterpolation2d
    down = AntiAliasInterpolation2d(3, 0.25)
    x = torch.rand(2, 3, 258, 130, generator=torch.Generator().manual_seed(9))
    fast = down(x)
    down.strided = False
    slow = down(x)
    full = F.interpolate(F.conv2d(F.pad(x, (6, 6, 6, 6)), down.weight, groups=3), scale_factor=(0.25, 0.25))
    assert fast.shape == slow.shape == full.shape == (2, 3, 64, 32)
    assert max_diff(fast, full) <= 1e-6 and torch.equal(slow, full)


def test_training_mode_matches_reference_and_has_gradients(ref_aligned):
    """Batch-norm in training mode (batch statistics) matches too, and every parameter gets a gradient."""
    config = small_config()
    ref_gen, ref_kp, gen, kp = twin_models(ref_aligned, config, seed=10)
    for m in (ref_gen, ref_kp, gen, kp):
        m.train()
    source, driving = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    ref_pred = ref_gen(source, kp_driving=ref_kp(driving), kp_source=ref_kp(source))["prediction"]
    pred = gen(source, kp_driving=kp(driving), kp_source=kp(source))["prediction"]
    assert max_diff(pred, ref_pred) <= TOL
    pred.mean().backward()
    missing = [n for m in (gen, kp) for n, p in m.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", shipped_configs("fomm"))
def test_reference_state_dict_loads_strictly(ref, name):
    """A state dict saved from the original's modules loads strictly into ours, for every shipped config."""
    config = load_config(name)
    with torch.device("meta"):  # names and shapes only: no memory, no init cost
        ref_gen, ref_kp = reference_models(ref, config)
    gen, kp = build_models(config, device="meta")
    for ours, theirs in ((gen, ref_gen), (kp, ref_kp)):
        ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        ref_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert ours_shapes == ref_shapes
        ours.load_state_dict(theirs.state_dict(), strict=True)


def test_antialias_kernel_equals_reference(ref):
    """The Gaussian kernel buffer is in the checkpoints; ours must compute the same one for any scale."""
    from deep_animator.modules.utils import AntiAliasInterpolation2d as RefAntiAlias
    from fomm_core.model.blocks import AntiAliasInterpolation2d
    for scale in (0.5, 0.25, 0.125, 0.3):
        assert max_diff(AntiAliasInterpolation2d(3, scale).weight, RefAntiAlias(3, scale).weight) <= 1e-7
