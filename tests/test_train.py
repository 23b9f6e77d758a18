"""Training: a few steps lower the loss, checkpoints have the original layout and resume; TPS warp maths."""
import pytest
import yaml

torch = pytest.importorskip("torch")

from fomm_core.train.trainer import Trainer, batches, make_dataset, train  # noqa: E402
from fomm_core.train.transforms import RandomTPS  # noqa: E402

TINY = {
    "dataset_params": {"frame_shape": [32, 32, 3]},
    "model_params": {
        "common_params": {"num_kp": 4, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 32, "scale_factor": 1,
                               "num_blocks": 3},
        "generator_params": {"block_expansion": 8, "max_features": 32, "num_down_blocks": 1,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 2,
                                                     "scale_factor": 0.5}},
    },
    "train_params": {"batch_size": 4, "lr": 0.002, "num_clips": 4, "clip_frames": 8, "scales": [1, 0.5]},
}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_a_few_steps_lower_the_reconstruction_loss(tiny_config):
    torch.set_num_threads(1)
    from fomm_core.model.config import load_config
    config = load_config(tiny_config)
    trainer = Trainer(config, seed=0)
    source, driving = next(batches(make_dataset("synthetic", config, 0), 4, 0))

    def reconstruction():
        torch.manual_seed(1)
        return float(trainer.losses(source, driving)["reconstruction"].detach())

    before = reconstruction()
    for _ in range(25):
        losses = trainer.train_step(source, driving)
    after = reconstruction()
    assert set(losses) >= {"reconstruction", "equivariance_value", "equivariance_jacobian", "total"}
    assert after < 0.8 * before, (before, after)


def test_checkpoint_layout_and_resume(tiny_config, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    train(tiny_config, out, steps=2, every=1, progress=False)
    state = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert {"generator", "kp_detector", "optimizer_generator", "optimizer_kp_detector", "epoch", "config"} <= set(state)
    assert state["step"] == 2 and state["config"]["model_params"] == TINY["model_params"]
    assert not list(out.glob("*.tmp"))
    trainer = train(tiny_config, out, steps=3, resume=True, progress=False)
    assert trainer.step == 3
    # the result loads strictly with the config it carries
    from fomm_core.model.checkpoint import load_checkpoints
    load_checkpoints(None, out / "checkpoint.pth.tar")


def test_tps_jacobian_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    warp = RandomTPS(2, sigma_affine=0.1, sigma_tps=0.05, generator=gen)
    coords = torch.rand(2, 5, 2, dtype=torch.float32) * 1.6 - 0.8
    jac = warp.jacobian(coords).detach()
    eps = 1e-3
    for axis in range(2):
        step = torch.zeros(2)
        step[axis] = eps
        fd = (warp.warp_coordinates(coords + step) - warp.warp_coordinates(coords - step)) / (2 * eps)
        assert torch.allclose(jac[..., axis], fd, atol=2e-3)


def test_identity_warp_keeps_the_image():
    warp = RandomTPS(1, sigma_affine=0.0, sigma_tps=0.0)
    image = torch.rand(1, 3, 16, 16)
    assert torch.allclose(warp.warp_image(image), image, atol=1e-5)


def _small_recipe(**train_params):
    """TINY at 32x32 with a full-resolution generator (15+ channels) and the small-model training options."""
    import copy
    config = copy.deepcopy(TINY)
    config["model_params"]["generator_params"].update(block_expansion=16, num_down_blocks=0, exact_flow_resize=True)
    config["train_params"].update({"batchnorm": "frozen", "init": "identity", "generator_lr_scale": 0.05,
                                   "lr_schedule": "cosine", "betas": [0.9, 0.999]}, **train_params)
    return config


def test_identity_init_makes_the_generator_copy_the_warped_source():
    from fomm_core.media.images import frames_to_tensor
    from fomm_core.train.synthetic import make_clip
    torch.set_num_threads(1)
    frames = frames_to_tensor(make_clip(5, 2, 32))                                    # [2, 3, 32, 32]
    trainer = Trainer(_small_recipe(), seed=0)
    trainer.generator.eval()
    trainer.kp_detector.eval()
    with torch.no_grad():
        kp = trainer.kp_detector(frames)
        same = trainer.generator(frames, kp_source=kp, kp_driving=kp)["prediction"]
    assert float((same - frames).abs().mean()) < 0.01      # identical keypoints: an identity flow, the frame back
    random = Trainer(_small_recipe(init="random"), seed=0)
    random.generator.eval()
    with torch.no_grad():
        other = random.generator(frames, kp_source=kp, kp_driving=kp)["prediction"]
    assert float((other - frames).abs().mean()) > 0.05     # the same model from a random start does not


def test_identity_init_refuses_a_generator_that_downsamples():
    config = _small_recipe()
    config["model_params"]["generator_params"]["num_down_blocks"] = 1
    with pytest.raises(ValueError, match="num_down_blocks 0"):
        Trainer(config)
    with pytest.raises(ValueError, match="batchnorm: frozen"):
        Trainer(_small_recipe(batchnorm="batch"))


def test_frozen_batchnorm_keeps_statistics_and_train_equals_eval():
    torch.set_num_threads(1)
    config = _small_recipe()
    trainer = Trainer(config, seed=0, total_steps=4)
    source, driving = next(batches(make_dataset("synthetic", config, 0), 4, 0))
    for _ in range(2):
        trainer.train_step(source, driving)
    norms = [m for m in trainer.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(float(m.running_var.min()) == 1.0 and float(m.running_mean.abs().max()) == 0.0
                         for m in norms)
    with torch.no_grad():
        kp = trainer.kp_detector(source)
        train_out = trainer.generator(source, kp_source=kp, kp_driving=kp)["prediction"]
        trainer.generator.eval()
        eval_out = trainer.generator(source, kp_source=kp, kp_driving=kp)["prediction"]
    assert torch.equal(train_out, eval_out)


def test_cosine_schedule_decays_to_two_percent():
    trainer = Trainer(_small_recipe(lr=0.001), seed=0, total_steps=100)
    factors = []
    for step in (0, 50, 100):
        trainer.step = step
        factors.append(trainer.lr_factor())
    assert factors[0] == pytest.approx(1.0) and factors[1] == pytest.approx(0.51) and factors[2] == pytest.approx(0.02)
    assert Trainer(TINY, seed=0, total_steps=100).lr_factor() == 1.0    # the original's constant rate by default


def test_exact_flow_resize_keeps_an_identity_flow_an_identity():
    from fomm_core.model.blocks import make_coordinate_grid
    from fomm_core.model.generator import warp
    features = torch.rand(1, 4, 32, 32)
    flow = make_coordinate_grid((16, 16)).unsqueeze(0)                        # identity at half the size
    assert torch.allclose(warp(features, flow, exact_resize=True), features, atol=1e-5)
    shifted = warp(features, flow)                                              # the original's resize
    assert float((shifted - features).abs().max()) > 0.1
