"""Identical models and inputs for every path: seeded random weights of both families, the benchmark's frames,
and the frame-size unit a config allows."""
from __future__ import annotations

import math
from pathlib import Path

SEED = 0


def randomise(*modules, seed=SEED):
    """Seeded random weights that make every parameter matter (BN statistics, the zero-init Jacobian head too)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, t in module.state_dict().items():
                if not t.is_floating_point() or name.endswith("down.weight"):  # the fixed Gaussian kernel
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=gen))
                elif name.endswith("running_mean") or (".norm" in name and name.endswith("bias")):
                    t.copy_(0.1 * noise)
                elif ".norm" in name and name.endswith("weight"):
                    t.copy_(1 + 0.1 * noise)
                elif name == "jacobian.weight":
                    t.copy_(0.01 * noise)
                elif name == "jacobian.bias":
                    t.add_(0.1 * noise)
                elif t.dim() == 1:
                    t.copy_(0.05 * noise)
                else:
                    t.copy_(noise * t.std())


def stress(generator, kp_detector):
    """Random weights give a nearly flat grey picture (a constant image scores 48.6 dB against it): scaled like
    this, the keypoints spread over the frame and the output spans 0..1, so a PSNR means something."""
    import torch
    with torch.no_grad():
        kp_detector.kp.weight.mul_(30)
        generator.final.weight.mul_(100)


def randomise_tpsmm(networks: dict, seed=SEED, stress=False, contrast=1.0):
    """Seeded random TPSMM weights, as `randomise`, with every batch norm's scale near 1 (the ResNets' and the AVD
    network's; near 0 they would silence the keypoints).

    stress: keypoints spread over the frame as a trained model's do (the detector's last layer x8, the AVD
    network's x4); the picture then has contrast of its own (std about 0.17). contrast scales the inpainting's last
    conv further (x30: a picture spanning 0..1, and a model so sensitive that float32 rounding shows at 1e-4).
    """
    import torch
    randomise(*networks.values(), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for net in networks.values():
            for m in net.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
        if stress:
            networks["kp_detector"].fg_encoder.fc.weight.mul_(8)
            networks["avd_network"].decoder[-1].weight.mul_(4)
        if contrast != 1:
            networks["inpainting_network"].final.weight.mul_(contrast)


def our_models(config_name="vox-256", seed=SEED, weights="random"):
    """(generator, kp_detector) of our fomm_core, eval mode: seeded random weights ('random' or 'stress'), or
    the checkpoint file `weights` (its config wins over config_name)."""
    import torch
    from fomm_core.model.config import build_models, load_config
    if weights not in ("random", "stress"):
        from fomm_core.model.checkpoint import load_checkpoints
        generator, kp_detector = load_checkpoints(config_name, weights, "cpu")
        return generator.eval(), kp_detector.eval()
    torch.manual_seed(seed)
    generator, kp_detector = build_models(load_config(config_name))
    randomise(generator, kp_detector, seed=seed)
    if weights == "stress":
        stress(generator, kp_detector)
    return generator.eval(), kp_detector.eval()


def family(config_name) -> str:
    """fomm, tpsmm or liveportrait (whose one config is its published sizes, named 'liveportrait')."""
    from fomm_core.model.config import config_family, load_config
    from fomm_core.model.liveportrait.files import CONFIG_NAME
    if config_name == CONFIG_NAME:
        return "liveportrait"
    return config_family(load_config(config_name))


def worker_weights(config_name, weights, workdir) -> str:
    """What the workers load: `weights` itself, except LivePortrait's stress weights, which are the original code's
    networks seeded (fomm_core.bench.liveportrait_reference) and saved once here as a folder of the five files, so
    that every path loads the same files strictly and no path's RSS holds a second copy of the networks."""
    if family(config_name) != "liveportrait" or weights != "stress":
        return weights
    from fomm_core.bench.liveportrait_reference import save_stress_set
    return str(save_stress_set(Path(workdir) / "liveportrait-stress", seed=SEED))


def our_tpsmm_networks(config_name="tpsmm-vox-256", seed=SEED, weights="random") -> dict:
    """Our TPSMM networks by state dict name, eval mode: seeded random weights ('random', 'stress') or a file's."""
    import torch
    from fomm_core.model.config import build_networks, load_config
    if weights not in ("random", "stress"):
        from fomm_core.model.checkpoint import load_model
        return load_model(weights, config_name, "cpu").networks
    torch.manual_seed(seed)
    networks = build_networks(load_config(config_name))
    randomise_tpsmm(networks, seed=seed, stress=weights == "stress")
    del networks["bg_predictor"]  # trained with the model, never used to animate
    return {k: v.eval() for k, v in networks.items()}


def clip(config_name, size=256, frames=4):
    """The source [1, 3, S, S] and driving frames [N, 3, S, S] every path of a config animates: for LivePortrait the
    test pictures its stress weights' poses are spread over (a picture shifted and blended into another), else
    `inputs`."""
    if family(config_name) == "liveportrait":
        from fomm_core.bench.liveportrait_reference import driving_frames, source_picture
        return source_picture(size), driving_frames(frames, size)
    return inputs(size, frames)


def inputs(size=256, frames=4, seed=SEED):
    """A smooth random source [1, 3, S, S] and driving frames [N, 3, S, S] in 0..1 (the same for every path)."""
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(seed + 1)
    coarse = torch.rand(frames + 1, 3, 16, 16, generator=gen)
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images[:1].contiguous(), images[1:].contiguous()


def size_unit(config_name) -> int:
    """Frame sizes must be multiples of this: every hourglass and the generator halve the image several times."""
    from fomm_core.model.config import load_config
    params = load_config(config_name)["model_params"]
    if family(config_name) == "tpsmm":  # the ResNet-18 halves 5 times; the dense motion's hourglass at its scale
        dm = params["dense_motion_params"]
        units = [32, 2 ** params["generator_params"]["num_down_blocks"], 2 ** dm["num_blocks"] / dm["scale_factor"]]
        return int(math.ceil(max(units)))
    kp, gen = params["kp_detector_params"], params["generator_params"]
    dm = gen.get("dense_motion_params") or {}
    units = [2 ** gen["num_down_blocks"], 2 ** kp["num_blocks"] / kp.get("scale_factor", 1)]
    if dm:
        units.append(2 ** dm["num_blocks"] / dm.get("scale_factor", 1))
    return int(math.ceil(max(units)))
