"""Training: a few steps lower the loss, checkpoints have the original layout and resume; TPS warp maths."""
import pytest
import yaml

torch = pytest.importorskip("torch")

from fomm_core.train import Trainer, batches, make_dataset, train  # noqa: E402
from fomm_core.transforms import RandomTPS  # noqa: E402

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
    from fomm_core.config import load_config
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
    from fomm_core.checkpoint import load_checkpoints
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
