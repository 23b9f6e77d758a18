"""FOMM self-supervised training: reconstruct a driving frame from a source frame of the same clip.

    python -m fomm_core.train --config synth-64 --out runs/synth --steps 3000 --seed 0 [--data synthetic|FOLDER]
                              [--resume] [--device cpu] [--every 200]

Losses: image-pyramid L1 between prediction and driving frame (the original uses a VGG perceptual loss; no VGG
weights here) plus the equivariance losses on keypoints and Jacobians under random thin-plate-spline warps.
Checkpoints (`DIR/checkpoint.pth.tar`, written atomically every N steps and at the end) have the original's
layout — generator, kp_detector, optimizer states, epoch — plus `step` and `config` (the model's own parameters).

Options for small models on a CPU budget (train_params; the defaults are the original's recipe):
- `batchnorm: frozen` — every BatchNorm keeps its initial statistics (mean 0, variance 1) and acts as a learnable
  per-channel scale and shift. Batch statistics of 8 small frames slowed our generator's learning several-fold
  and made eval-mode output differ from train-mode output; frozen, the two are the same function.
  `batchnorm: frozen-image-path` freezes only the generator's image path (encoder, bottleneck, decoder): the
  keypoint detector and the dense motion network keep the original's batch statistics.
- `init: identity` — the generator starts as "prediction = the source warped by the dense motion" (see
  `init_generator_as_warp`), so the reconstruction loss trains the motion from the first step instead of
  waiting for the decoder to learn to copy pixels.
- `generator_lr_scale` — learning rate of the generator's image path relative to `lr` (the dense motion network
  keeps `lr`); Adam's steps of size `lr` on every weight would wipe out the identity start at once.
- `betas`, `lr_schedule: cosine` (decays to 2 % of `lr` over the run).
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

DEFAULT_TRAIN = {
    "batch_size": 8, "lr": 5e-4, "betas": [0.5, 0.999], "lr_schedule": "constant", "scales": [1, 0.5, 0.25, 0.125],
    "batchnorm": "batch", "init": "random", "background_bias": 3.0, "generator_lr_scale": 1.0,
    "loss_weights": {"reconstruction": 10, "equivariance_value": 10, "equivariance_jacobian": 10},
    "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
    "num_clips": 200, "clip_frames": 32,
}
CHECKPOINT = "checkpoint.pth.tar"


def train_params(config) -> dict:
    params = dict(DEFAULT_TRAIN)
    params.update(config.get("train_params") or {})
    return params


class Trainer:
    """Models, optimizers and one training step; `losses(source, driving)` -> dict of named scalar losses."""

    def __init__(self, config, device="cpu", seed=0, total_steps=None):
        import torch
        from fomm_core.model.config import build_models
        from fomm_core.train.losses import ImagePyramid

        self.config, self.device, self.params = config, torch.device(device), train_params(config)
        torch.manual_seed(seed)
        self.generator, self.kp_detector = build_models(config)
        if self.params["init"] == "identity":
            if self.params["batchnorm"] not in ("frozen", "frozen-image-path"):
                raise ValueError("init: identity needs batchnorm: frozen (batch statistics would rescale the copy)")
            init_generator_as_warp(self.generator, background_bias=float(self.params["background_bias"]))
        self.generator.to(self.device)
        self.kp_detector.to(self.device)
        self.train_mode()
        self.pyramid = ImagePyramid(self.params["scales"]).to(self.device)
        self.lr, self.total_steps = float(self.params["lr"]), total_steps
        betas = tuple(float(b) for b in self.params["betas"])
        motion = [p for n, p in self.generator.named_parameters() if n.startswith("dense_motion_network.")]
        image = [p for n, p in self.generator.named_parameters() if not n.startswith("dense_motion_network.")]
        image_lr = self.lr * float(self.params["generator_lr_scale"])
        self.opt_generator = torch.optim.Adam([{"params": motion, "lr": self.lr, "initial_lr": self.lr},
                                               {"params": image, "lr": image_lr, "initial_lr": image_lr}],
                                              betas=betas)
        self.opt_kp_detector = torch.optim.Adam([{"params": list(self.kp_detector.parameters()), "lr": self.lr,
                                                  "initial_lr": self.lr}], betas=betas)
        self.rng = torch.Generator(device="cpu").manual_seed(seed)  # the random warps
        self.step = 0

    def train_mode(self) -> None:
        """Both networks in training mode; frozen BatchNorms (see `batchnorm`) stay in eval mode."""
        import torch
        mode = self.params["batchnorm"]
        for net in (self.generator, self.kp_detector):
            net.train()
        if mode == "batch":
            return
        nets = {"generator": self.generator, "kp_detector": self.kp_detector}
        for net_name, net in nets.items():
            for name, module in net.named_modules():
                image_path = net_name == "generator" and not name.startswith("dense_motion_network")
                if isinstance(module, torch.nn.BatchNorm2d) and (mode == "frozen" or image_path):
                    module.eval()

    def lr_factor(self) -> float:
        """Learning-rate multiplier at the current step (cosine: 1 -> 0.02 over total_steps)."""
        if self.params["lr_schedule"] != "cosine" or not self.total_steps:
            return 1.0
        progress = min(1.0, self.step / self.total_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    def losses(self, source, driving):
        from fomm_core.train.losses import equivariance_losses, pyramid_l1
        from fomm_core.train.transforms import RandomTPS

        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        out = self.generator(source, kp_source=kp_source, kp_driving=kp_driving)
        weights = self.params["loss_weights"]
        result = {"reconstruction": weights["reconstruction"] * pyramid_l1(self.pyramid, out["prediction"], driving)}
        if weights.get("equivariance_value", 0) or weights.get("equivariance_jacobian", 0):
            warp = RandomTPS(driving.shape[0], **self.params["transform_params"], generator=self.rng)
            warp.theta, warp.weights = warp.theta.to(self.device), warp.weights.to(self.device)
            warp.control = warp.control.to(self.device)
            value, jacobian = equivariance_losses(self.kp_detector, driving, kp_driving, warp)
            result["equivariance_value"] = weights["equivariance_value"] * value
            result["equivariance_jacobian"] = weights["equivariance_jacobian"] * jacobian
        return result

    def train_step(self, source, driving) -> dict:
        source, driving = source.to(self.device), driving.to(self.device)
        factor = self.lr_factor()
        for opt in (self.opt_generator, self.opt_kp_detector):
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
        losses = self.losses(source, driving)
        total = sum(losses.values())
        self.opt_generator.zero_grad(set_to_none=True)
        self.opt_kp_detector.zero_grad(set_to_none=True)
        total.backward()
        self.opt_generator.step()
        self.opt_kp_detector.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())}

    def state(self, with_optimizers=True) -> dict:
        model_config = {k: self.config[k] for k in ("dataset_params", "model_params", "animate_params")
                        if k in self.config}
        state = {"generator": self.generator.state_dict(), "kp_detector": self.kp_detector.state_dict(),
                 "epoch": self.step, "step": self.step, "config": model_config}
        if with_optimizers:
            state["optimizer_generator"] = self.opt_generator.state_dict()
            state["optimizer_kp_detector"] = self.opt_kp_detector.state_dict()
        return state

    def load_state(self, state) -> None:
        self.generator.load_state_dict(state["generator"])
        self.kp_detector.load_state_dict(state["kp_detector"])
        if "optimizer_generator" in state:
            self.opt_generator.load_state_dict(state["optimizer_generator"])
            self.opt_kp_detector.load_state_dict(state["optimizer_kp_detector"])
        self.step = int(state.get("step", state.get("epoch", 0)))


def init_generator_as_warp(generator, thresholds=(0.0, 0.08, 0.3, 0.7, 0.92), background_bias=3.0) -> None:
    """Set a generator's weights so that its prediction is (nearly) the source warped by the dense motion.

    Needs num_down_blocks 0 (features at image size) and at least 3 x len(thresholds) channels. The first conv
    puts relu(x - t) of each colour channel in its own feature channels; the residual bottleneck blocks start as
    identities (second conv zero); the final conv sums those ramps into a piecewise-linear fit of logit(x), so that
    the closing sigmoid gives x back (mean error 0.004 over 0..1). The occlusion map starts at 1 (nothing hidden).
    background_bias > 0 tilts the dense motion's mask towards the background (identity) motion; synth-64 uses 0,
    because a mask that starts on the identity learned to stay there (held-out ratio 0.94 vs 0.74 at 750 steps).
    """
    import torch
    first, final = generator.first.conv, generator.final
    n, colours = len(thresholds), final.out_channels
    if len(generator.down_blocks) or first.out_channels < colours * n:
        raise ValueError("init: identity needs num_down_blocks 0 and block_expansion >= "
                         f"{colours * n} (one feature channel per colour and ramp)")
    # fit w: sigmoid(sum_j w_j relu(x - t_j) + b) ~= x on 0..1 (a 6-parameter least-squares problem)
    x = torch.linspace(0, 1, 401)
    ramps = torch.stack([torch.relu(x - t) for t in thresholds] + [torch.ones_like(x)], 1)
    w = torch.tensor([8.0] + [0.0] * (n - 1) + [-4.0], requires_grad=True)
    fit = torch.optim.LBFGS([w], max_iter=500)

    def closure():
        fit.zero_grad()
        loss = ((torch.sigmoid(ramps @ w) - x) ** 2).mean()
        loss.backward()
        return loss
    fit.step(closure)
    w = w.detach()

    centre, centre_final = first.kernel_size[0] // 2, final.kernel_size[0] // 2
    with torch.no_grad():
        first.weight[: colours * n].zero_()
        final.weight.zero_()
        for c in range(colours):
            for j, t in enumerate(thresholds):
                first.weight[c * n + j, c, centre, centre] = 1.0
                first.bias[c * n + j] = -t
                final.weight[c, c * n + j, centre_final, centre_final] = w[j]
            final.bias[c] = w[-1]
        for block in generator.bottleneck:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        dense = generator.dense_motion_network
        if dense is not None:
            dense.mask.bias[0] += background_bias
            if dense.occlusion is not None:
                dense.occlusion.weight.zero_()
                dense.occlusion.bias.fill_(6.0)


def save_atomic(state, path) -> None:
    """torch.save to a temp file beside `path`, then rename (a stop mid-write never leaves a broken file)."""
    import torch
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def make_dataset(data, config, seed):
    from fomm_core.train.synthetic import folder_pairs, synthetic_pairs
    from fomm_core.model.config import frame_size
    size = frame_size(config)[0]
    params = train_params(config)
    if data in (None, "synthetic"):
        return synthetic_pairs(size, int(params["num_clips"]), int(params["clip_frames"]), seed=seed)
    return folder_pairs(data, size, seed=seed)


def batches(dataset, batch_size, start_step):
    """Endless deterministic batches; batch n holds items n*batch_size .. (n+1)*batch_size-1 (so resume lines up)."""
    import torch
    n = start_step
    while True:
        items = [dataset[n * batch_size + i] for i in range(batch_size)]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        n += 1


def train(config_name, out, steps, seed=0, data="synthetic", resume=False, device="cpu", every=200,
          progress=True, log=None):
    """Train to `steps` total steps; returns the Trainer. log: optional callable(step, losses dict)."""
    import torch
    from fomm_core.model.config import load_config

    config = load_config(config_name)
    trainer = Trainer(config, device, seed, total_steps=steps)
    out = Path(out)
    ckpt = out / CHECKPOINT
    if resume and ckpt.is_file():
        trainer.load_state(torch.load(ckpt, map_location="cpu", weights_only=True))
    dataset = make_dataset(data, config, seed)
    stream = batches(dataset, int(trainer.params["batch_size"]), trainer.step)

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        bar = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                       TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("train", total=steps, completed=trainer.step, losses="")
    try:
        while trainer.step < steps:
            source, driving = next(stream)
            losses = trainer.train_step(source, driving)
            if bar is not None:
                bar.update(task, completed=trainer.step,
                           losses=" ".join(f"{k[:6]}={v:.3f}" for k, v in losses.items()))
            if log is not None:
                log(trainer.step, losses)
            if every and trainer.step % every == 0:
                save_atomic(trainer.state(), ckpt)
    finally:
        if bar is not None:
            bar.stop()
    save_atomic(trainer.state(), ckpt)
    return trainer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fomm_core.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="synth-64", help="shipped config name or YAML path")
    parser.add_argument("--out", required=True, help="folder for checkpoint.pth.tar")
    parser.add_argument("--steps", type=int, default=3000, help="total optimisation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a folder of video clips")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth.tar")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--every", type=int, default=200, help="checkpoint every N steps")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log-every", type=int, default=0, help="print the losses every N steps")
    args = parser.parse_args(argv)
    from fomm_core.errors import FommError

    def log(step, losses):
        if args.log_every and step % args.log_every == 0:
            print(f"step {step} " + " ".join(f"{k}={v:.4f}" for k, v in losses.items()), flush=True)

    start = time.time()
    try:
        train(args.config, args.out, args.steps, args.seed, args.data, args.resume, args.device, args.every,
              progress=not args.no_progress, log=log)
    except FommError as err:
        print(f"error: {err}")
        return 2
    print(f"done: {args.steps} steps in {time.time() - start:.0f} s -> {Path(args.out) / CHECKPOINT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
