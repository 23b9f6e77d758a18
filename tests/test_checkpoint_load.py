"""Loading checkpoints: the original file layout, prefixes, carried configs, config detection, and broken files."""
import copy
import zipfile

import pytest
import yaml

torch = pytest.importorskip("torch", reason="torch is not installed")

from conftest import TINY_MODEL  # noqa: E402
from fomm_core import load_checkpoints  # noqa: E402
from fomm_core.model.checkpoint import load_model, read_checkpoint  # noqa: E402
from fomm_core.model.config import build_models, build_networks, detect_config, load_config, matching_configs, shipped_configs  # noqa: E402
from fomm_core.errors import FommError  # noqa: E402

# the tiny test model with a shallower, coarser dense motion network (its own shapes, matching no shipped config)
SMALL = copy.deepcopy(TINY_MODEL)
SMALL["model_params"]["generator_params"]["dense_motion_params"].update(num_blocks=2, scale_factor=0.25)


@pytest.fixture
def small_config(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def trained_like_models(seed=0):
    """Small models with non-default weights and batch-norm statistics, as after training."""
    generator, kp_detector = build_models(SMALL)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (generator, kp_detector):
            for name, tensor in module.state_dict().items():
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
                elif tensor.is_floating_point() and not name.endswith("down.weight"):
                    tensor.add_(0.01 * torch.randn(tensor.shape, generator=gen))
    return generator.eval(), kp_detector.eval()


def original_layout(generator, kp_detector, prefix=""):
    """What first-order-model's train.py saves: the two state dicts plus the discriminator, optimizers, epoch."""
    junk_weight = torch.randn(8, 3, 4, 4)
    return {
        "generator": {prefix + k: v for k, v in generator.state_dict().items()},
        "kp_detector": {prefix + k: v for k, v in kp_detector.state_dict().items()},
        "discriminator": {"discs.1.down_blocks.0.conv.weight": junk_weight},
        "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0]}]},
        "optimizer_discriminator": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": junk_weight}},
                                    "param_groups": [{"lr": 2e-4, "params": [0]}]},
        "optimizer_kp_detector": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0]}]},
        "epoch": 99,
    }


def animate_once(generator, kp_detector):
    images = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        kp_src, kp_drv = kp_detector(images[0]), kp_detector(images[1])
        return generator(images[0], kp_driving=kp_drv, kp_source=kp_src)["prediction"]


def shape_only_state(module):
    """A state dict with the right names and shapes whose tensors share one element (a tiny file on disk)."""
    return {k: torch.zeros((1,) * v.dim(), dtype=v.dtype).expand(v.shape) for k, v in module.state_dict().items()}


def assert_one_sentence(err, *phrases):
    text = str(err.value)
    assert "\n" not in text and text.endswith(".") and "Traceback" not in text
    for phrase in phrases:
        assert phrase in text, text


# -- loading real files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False], ids=["torch-1.0-format", "zip-format"])
def test_original_checkpoint_file_loads_and_animates_identically(tmp_path, small_config, legacy):
    generator, kp_detector = trained_like_models()
    path = tmp_path / "model-cpk.pth.tar"
    torch.save(original_layout(generator, kp_detector), path, _use_new_zipfile_serialization=not legacy)

    loaded_gen, loaded_kp = load_checkpoints(str(small_config), str(path))
    assert not loaded_gen.training and not loaded_kp.training
    assert torch.equal(animate_once(loaded_gen, loaded_kp), animate_once(generator, kp_detector))


def test_module_prefix_from_dataparallel_is_accepted(tmp_path, small_config):
    generator, kp_detector = trained_like_models(seed=2)
    path = tmp_path / "dp.pth.tar"
    torch.save(original_layout(generator, kp_detector, prefix="module."), path)
    checkpoint = read_checkpoint(path)
    assert all(not k.startswith("module.") for k in checkpoint["generator"])
    loaded_gen, loaded_kp = load_checkpoints(small_config, path)
    assert torch.equal(animate_once(loaded_gen, loaded_kp), animate_once(generator, kp_detector))


@pytest.mark.parametrize("stored", ["full-config", "model-params-only"])
def test_checkpoint_carrying_its_config_needs_no_config(tmp_path, stored):
    generator, kp_detector = trained_like_models(seed=3)
    path = tmp_path / "ours.pth.tar"
    config = SMALL if stored == "full-config" else SMALL["model_params"]
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(), "config": config}, path)
    loaded_gen, loaded_kp = load_checkpoints(None, path)
    assert torch.equal(animate_once(loaded_gen, loaded_kp), animate_once(generator, kp_detector))


@pytest.mark.parametrize("legacy", [True, False], ids=["torch-1.0-format", "zip-format"])
def test_model_size_from_the_config_given_or_carried(tmp_path, small_config, legacy):
    generator, kp_detector = trained_like_models(seed=4)
    carrying = tmp_path / "ours.pth.tar"
    config = copy.deepcopy(SMALL)
    config["dataset_params"] = {"frame_shape": [96, 96, 3]}
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(), "config": config},
               carrying, _use_new_zipfile_serialization=not legacy)
    assert load_model(carrying, small_config).size == SMALL["dataset_params"]["frame_shape"][0] == 64  # given wins
    assert load_model(carrying).size == 96  # carried, in either file format
    assert load_model(write_shipped_shapes(tmp_path, "vox-256"), "vox-256").size == 256
    assert load_model(write_shipped_shapes(tmp_path, "tpsmm-vox-256"), config="tpsmm-ted-384").size == 384


def write_shipped_shapes(tmp_path, name):
    """A published-layout file with a shipped config's names and shapes (one shared element per tensor)."""
    path = tmp_path / f"{name}.pth.tar"
    torch.save({key: shape_only_state(net) for key, net in build_networks(load_config(name), device="meta").items()},
               path)
    return path


def test_published_shapes_load_by_shipped_name_and_by_detection(tmp_path):
    generator, kp_detector = build_models(load_config("mgif-256"), device="meta")
    path = tmp_path / "mgif.pth.tar"
    torch.save({"generator": shape_only_state(generator), "kp_detector": shape_only_state(kp_detector)}, path)
    gen, kp = load_checkpoints("mgif-256", path)
    assert kp.jacobian.out_channels == 4 and not gen.training
    _, kp = load_checkpoints(None, path)  # no config given and none carried: detected from the shapes
    assert kp.jacobian.out_channels == 4


def test_mismatch_names_the_config_that_fits(tmp_path):
    generator, kp_detector = build_models(load_config("mgif-256"), device="meta")
    path = tmp_path / "mgif.pth.tar"
    torch.save({"generator": shape_only_state(generator), "kp_detector": shape_only_state(kp_detector)}, path)
    with pytest.raises(FommError) as err:
        load_checkpoints("vox-256", path)
    assert_one_sentence(err, "does not fit config 'vox-256'", "jacobian", "'mgif-256'")


def test_mismatch_with_no_fitting_config_says_so(tmp_path, small_config):
    generator, kp_detector = trained_like_models()
    path = tmp_path / "small.pth.tar"
    torch.save(original_layout(generator, kp_detector), path)
    with pytest.raises(FommError) as err:
        load_checkpoints("vox-256", path)
    assert_one_sentence(err, "does not fit config 'vox-256'", "no shipped config fits")


def _damaged(tmp_path, name, drop=(), add=()):
    """A published-layout file of a shipped config with tensors dropped ('module.key') or added."""
    states = {key: shape_only_state(net) for key, net in build_networks(load_config(name), device="meta").items()}
    for full in drop:
        module, key = full.split(".", 1)
        del states[module][key]
    for full in add:
        module, key = full.split(".", 1)
        states[module][key] = torch.zeros(3)
    path = tmp_path / f"{name}-damaged.pth.tar"
    torch.save(states, path)
    return path


LOST = "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"


@pytest.mark.parametrize("config", [None, "tpsmm-vox-256", "tpsmm-ted-384"])
def test_a_tpsmm_file_with_a_tensor_missing_is_called_damaged_and_the_tensor_named(tmp_path, config):
    """Whatever --config says (none, the right one, another of the family): one sentence that says damaged, names
    the lost tensor and never blames the config."""
    path = _damaged(tmp_path, "tpsmm-vox-256", drop=[LOST])
    with pytest.raises(FommError) as err:
        load_model(path, config)
    assert_one_sentence(err, "is damaged", "lacks 1 tensor of config 'tpsmm-", LOST, "fetch it again")
    assert "no shipped config" not in str(err.value) and "trained with" not in str(err.value).split("(a model")[0]


def test_a_fomm_file_with_tensors_lost_and_one_added_names_them(tmp_path):
    lost = ["kp_detector.kp.weight", "kp_detector.kp.bias", "generator.final.bias", "generator.final.weight"]
    path = _damaged(tmp_path, "vox-256", drop=lost, add=["generator.extra"])
    with pytest.raises(FommError) as err:
        load_checkpoints("mgif-256", path)          # a config whose shapes it does not have: still damaged
    assert_one_sentence(err, "is damaged", "lacks 4 tensors of config 'vox-256'", "and 1 more",
                        "holds 1 tensor that config has no place for (generator.extra)")


def test_only_an_added_tensor_is_named_too(tmp_path):
    path = _damaged(tmp_path, "vox-256", add=["kp_detector.spare"])
    with pytest.raises(FommError) as err:
        load_checkpoints("vox-256", path)
    assert_one_sentence(err, "is damaged", "holds 1 tensor that config 'vox-256' has no place for (kp_detector.spare)")


@pytest.mark.parametrize("name", shipped_configs())
def test_detect_config_identifies_each_shipped_config(tmp_path, name):
    networks = build_networks(load_config(name), device="meta")
    path = tmp_path / f"{name}.pth.tar"
    torch.save({key: shape_only_state(net) for key, net in networks.items()}, path)
    checkpoint = read_checkpoint(path)
    assert name in matching_configs(checkpoint)
    # vox/taichi/fashion/bair/nemo share every shape, and so do TPSMM's four: shapes alone say only "vox"
    same_shapes = {"vox-256", "taichi-256", "fashion-256", "bair-256", "nemo-256"}
    tpsmm = {"tpsmm-vox-256", "tpsmm-taichi-256", "tpsmm-ted-384", "tpsmm-mgif-256"}
    expected = "vox-256" if name in same_shapes else "tpsmm-vox-256" if name in tpsmm else name
    assert detect_config(checkpoint) == expected


def test_detect_config_returns_none_for_other_shapes():
    generator, kp_detector = build_models(SMALL, device="meta")
    assert detect_config({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict()}) is None


# -- broken files: one sentence each, saying what happened and what to do ----------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FommError) as err:
        read_checkpoint(tmp_path / "nope.pth.tar")
    assert_one_sentence(err, "does not exist")


def test_unpacked_checkpoint_folder(tmp_path):
    generator, kp_detector = trained_like_models()
    packed = tmp_path / "vox-cpk.pth.tar"
    torch.save(original_layout(generator, kp_detector), packed)
    unpacked = tmp_path / "vox-cpk"
    with zipfile.ZipFile(packed) as archive:  # what "extract here" does to a .pth.tar
        archive.extractall(unpacked)
    with pytest.raises(FommError) as err:
        read_checkpoint(unpacked)
    assert_one_sentence(err, "unpacked checkpoint", "must not be unzipped")
    with pytest.raises(FommError) as err:
        read_checkpoint(_empty_dir(tmp_path))
    assert_one_sentence(err, "is a folder")


def _empty_dir(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_zip_holding_the_checkpoint(tmp_path):
    generator, kp_detector = trained_like_models()
    inner = tmp_path / "vox-cpk.pth.tar"
    torch.save(original_layout(generator, kp_detector), inner)
    outer = tmp_path / "download.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.write(inner, "vox-cpk.pth.tar")
    with pytest.raises(FommError) as err:
        read_checkpoint(outer)
    assert_one_sentence(err, "zip archive", "vox-cpk.pth.tar")


def test_html_page_instead_of_the_file(tmp_path):
    page = tmp_path / "vox-cpk.pth.tar"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Quota exceeded</title></head>"
                    "<body>Too many users have viewed or downloaded this file recently.</body></html>\n")
    with pytest.raises(FommError) as err:
        read_checkpoint(page)
    assert_one_sentence(err, "web page", "download it again")


@pytest.mark.parametrize("legacy", [True, False], ids=["torch-1.0-format", "zip-format"])
def test_truncated_download(tmp_path, legacy):
    generator, kp_detector = trained_like_models()
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save(original_layout(generator, kp_detector), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    assert_one_sentence(err, "incomplete", "download it again")


@pytest.mark.parametrize("content,phrase", [
    (b"", "empty"),
    (b"\x00\x17 definitely not a checkpoint \xff" * 40, "not a PyTorch checkpoint"),
])
def test_not_a_checkpoint_bytes(tmp_path, content, phrase):
    path = tmp_path / "weights.pth.tar"
    path.write_bytes(content)
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    assert_one_sentence(err, phrase)


@pytest.mark.parametrize("payload,phrase", [
    ([torch.zeros(2)], "holds a list"),
    ({"state_dict": {"conv.weight": torch.zeros(1)}, "epoch": 3}, "no FOMM or TPSMM weights"),
])
def test_torch_files_that_are_not_fomm(tmp_path, payload, phrase):
    path = tmp_path / "other.pth"
    torch.save(payload, path)
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    assert_one_sentence(err, phrase)


class Pickled:
    """An arbitrary object: weights_only loading must refuse it."""


def test_file_with_arbitrary_python_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pth.tar"
    torch.save({"generator": {}, "kp_detector": {}, "extra": Pickled()}, path)
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    assert_one_sentence(err, "not loaded")


def test_cuda_asked_for_but_unavailable(tmp_path, small_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(FommError) as err:
        load_checkpoints(small_config, tmp_path / "never-read.pth.tar", device="cuda")
    assert_one_sentence(err, "CUDA")


def test_unknown_config_name(tmp_path):
    generator, kp_detector = trained_like_models()
    path = tmp_path / "m.pth.tar"
    torch.save(original_layout(generator, kp_detector), path)
    with pytest.raises(FommError) as err:
        load_checkpoints("vox-1024", path)
    assert_one_sentence(err, "vox-1024", "vox-256")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params: [unclosed\n")
    with pytest.raises(FommError) as err:
        load_checkpoints(bad, path)
    assert_one_sentence(err, "not readable YAML")
