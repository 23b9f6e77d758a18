"""TPSMM behind the same commands: a checkpoint in the published layout, recognised by its state dicts alone, animated
end to end by the CLI on a real clip with audio, in the demo's modes; registered by `checkpoints add`."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from fomm_core.media.video import iter_frames, probe_video  # noqa: E402

FRAMES = 6


@pytest.fixture(scope="module")
def networks():
    from fomm_core.bench import randomise_tpsmm
    from fomm_core.model.config import build_networks, load_config
    torch.manual_seed(0)
    nets = build_networks(load_config("tpsmm-vox-256"))
    randomise_tpsmm(nets, seed=0, stress=True)
    return {k: v.eval() for k, v in nets.items()}


def save_published_layout(path, nets, without=()):
    """As the original training script saves: the five state dicts, optimizer states, the epoch."""
    data = {k: v.state_dict() for k, v in nets.items() if k not in without}
    data.update(optimizer={"state": {}, "param_groups": []}, epoch=99)
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def tpsmm_checkpoint(networks, tmp_path_factory):
    return save_published_layout(tmp_path_factory.mktemp("tpsmm") / "tpsmm-vox.pth.tar", networks)


@pytest.fixture(scope="module")
def face_photo():
    from fomm_core.inference import calibration
    from pathlib import Path
    return Path(calibration.__file__).with_name("grace_hopper_face.jpg")


def engine_frames(nets, photo, clip, mode):
    """What the engine makes of the same inputs the CLI reads (centre squares at 256), fp32, batch 4."""
    from fomm_core.inference.tpsmm import TpsAnimator
    from fomm_core.media.crop import source_square
    from fomm_core.media.images import frames_to_tensor, square_resize, tensor_to_frames
    animator = TpsAnimator(nets, precision="fp32", mode=mode)
    animator.set_source(frames_to_tensor([source_square(photo, 256, False).image]))
    driving = [square_resize(f, 256) for f in iter_frames(clip)]
    out = [animator.animate(frames_to_tensor(driving[i:i + 4])) for i in range(0, len(driving), 4)]
    return tensor_to_frames(torch.cat(out))


def encoded(frames, path):
    """Frames through the H.264 encoder animate uses, decoded again."""
    from fomm_core.media.video import VideoWriter
    with VideoWriter(path, 12, (256, 256)) as writer:
        for frame in frames:
            writer.write(frame)
    return list(iter_frames(path))


def psnr(a, b):
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


@pytest.mark.parametrize("mode", ["relative", "avd"])
def test_cli_animates_with_a_tpsmm_checkpoint_alone(tpsmm_checkpoint, networks, face_photo, clip_factory, tmp_path,
                                                    mode):
    clip = clip_factory("drv.mp4", frames=FRAMES, size=(160, 120), fps=12, audio=True)
    out = tmp_path / "out.mp4"
    r = run_cli("animate", face_photo, clip, "-o", out, "--checkpoint", tpsmm_checkpoint, "--precision", "fp32",
                "--mode", mode, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "(TPSMM) at 256x256" in r.stderr and f"{mode} motion" in r.stderr
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (256, 256, 12.0, True)
    written = list(iter_frames(out))
    assert len(written) == FRAMES
    expected = encoded(engine_frames(networks, face_photo, clip, mode), tmp_path / "expected.mp4")
    assert min(psnr(w, e) for w, e in zip(written, expected)) > 45  # the same frames through the same encoder
    assert max(psnr(written[0], w) for w in written[1:]) < 60  # the frames move


def test_mode_avd_needs_an_avd_network(networks, face_photo, clip_factory, tmp_path, tiny_checkpoint):
    clip = clip_factory("drv.mp4", frames=2, size=(64, 64), audio=False)
    no_avd = save_published_layout(tmp_path / "no-avd.pth.tar", networks, without=("avd_network", "bg_predictor"))
    out = tmp_path / "out.mp4"
    for checkpoint, words in ((no_avd, "holds no avd_network"), (tiny_checkpoint, "belongs to TPSMM models")):
        r = run_cli("animate", face_photo, clip, "-o", out, "--checkpoint", checkpoint, "--mode", "avd",
                    "--precision", "fp32")
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_checkpoints_add_recognises_a_tpsmm_file(tpsmm_checkpoint, tmp_path):
    env = {"FOMM_DOCTOR_HOME": str(tmp_path / "home")}
    r = run_cli("checkpoints", "add", tpsmm_checkpoint, "--name", "my-tpsmm", "--link", env=env)
    assert r.returncode == 0, r.stderr
    assert "tpsmm-vox-256" in r.stdout
    listed = run_cli("checkpoints", "list", "--json", env=env)
    import json
    rows = {row["name"]: row for row in json.loads(listed.stdout)["checkpoints"]}
    assert rows["my-tpsmm"]["config"] == "tpsmm-vox-256" and rows["my-tpsmm"]["present"]
    published = {name: rows[name] for name in ("tpsmm-vox", "tpsmm-taichi", "tpsmm-ted", "tpsmm-mgif")}
    assert published["tpsmm-ted"]["config"] == "tpsmm-ted-384"
    for row in published.values():
        urls = " ".join(row["urls"])
        assert row["size"] and "disk.yandex.com/d/bWopgbGj1ZUV1w" in urls and "1pNDo1ODQIb5HVObRtCmubqJikmR7VVLT" in urls


def test_a_ted_file_animates_at_384_with_its_config(networks, tmp_path):
    from fomm_core.inference.engine import make_animator
    from fomm_core.model.checkpoint import load_model
    path = save_published_layout(tmp_path / "ted.pth.tar", networks, without=("bg_predictor",))
    model = load_model("tpsmm-ted-384", path)
    assert model.family == "tpsmm" and model.size == 384 and "bg_predictor" not in model.networks
    animator = make_animator(model, precision="fp32", mode="absolute")
    gen = torch.Generator().manual_seed(0)
    animator.set_source(torch.rand(1, 3, 384, 384, generator=gen))
    assert animator.animate(torch.rand(2, 3, 384, 384, generator=gen)).shape == (2, 3, 384, 384)
