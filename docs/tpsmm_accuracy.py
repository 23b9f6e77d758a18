"""Where the distance between our TPSMM frames and the original code's comes from (the figures docs/precision.md
quotes beside `fomm-doctor bench --model tpsmm --smoke --json`):

    python docs/tpsmm_accuracy.py           # about a minute on 2 cores; needs the original code (see bench)

The inputs are bench --smoke's: tpsmm-vox-256 at 128 px, its two driving frames, its seeded stress weights, loaded
strictly into the original networks and into our exact path (fp32: folded, channels-last, a batch of 2). Printed,
as the largest absolute difference of a colour value in 0..1:
- ours against the original demo's make_animation, end to end (bench's max_abs_vs_reference);
- ours given the very keypoints the original computed (what is left is the rest of the networks);
- the original against itself: its demo against the same code with the driving frames sliced contiguously;
- the original in float32, and ours, against the original run in float64.
"""
from __future__ import annotations

import copy

CONFIG, SIZE, FRAMES = "tpsmm-vox-256", 128, 2


def original_networks():
    """-> (the original code's namespace, its networks holding bench's stress weights, in eval mode)."""
    from fomm_core.bench.reference import load_tpsmm_reference, tpsmm_reference_networks
    from fomm_core.bench.weights import our_tpsmm_networks
    from fomm_core.model.config import load_config
    ref = load_tpsmm_reference()
    if ref is None:
        raise SystemExit("the original TPSMM code is not there: set FOMM_TPSMM_REFERENCE (see fomm-doctor bench).")
    theirs = tpsmm_reference_networks(ref, load_config(CONFIG))
    for name, net in our_tpsmm_networks(CONFIG, weights="stress").items():
        theirs[name].load_state_dict(net.state_dict(), strict=True)
    return ref, {k: v.eval() for k, v in theirs.items()}


class Recorder:
    """A keypoint detector that remembers each image it saw ([3, H, W]) with its keypoints ([1, K, 2])."""

    def __init__(self, detector):
        self.detector, self.seen = detector, []

    def __call__(self, images):
        out = self.detector(images)
        self.seen += [(images[i].clone(), out["fg_kp"][i:i + 1].clone()) for i in range(images.shape[0])]
        return out

    def replay(self, images) -> dict:
        """The keypoints last recorded for each of these images (the same pixels), as the detector's dict."""
        import torch
        return {"fg_kp": torch.cat([[kp for seen, kp in self.seen if torch.equal(seen, image)][-1]
                                    for image in images])}


def demo_frames(ref, nets, source, driving, detector):
    """The original demo's make_animation (relative mode): [N, 3, S, S] float64."""
    import numpy as np
    import torch
    frames = ref.make_animation(source[0].permute(1, 2, 0).numpy(), [f.permute(1, 2, 0).numpy() for f in driving],
                                nets["inpainting_network"], detector, nets["dense_motion_network"],
                                nets["avd_network"], "cpu", mode="relative")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).double()


def loop_frames(ref, nets, source, driving, dtype):
    """The same calls as make_animation, the driving frames sliced contiguously, in `dtype`: [N, 3, S, S] float64."""
    import torch
    nets = {k: copy.deepcopy(v).to(dtype) for k, v in nets.items()}
    source, driving = source.to(dtype), driving.to(dtype)
    out = []
    with torch.no_grad():
        kp_source, initial = nets["kp_detector"](source), nets["kp_detector"](driving[:1])
        for i in range(driving.shape[0]):
            kp = ref.relative_kp(kp_source=kp_source, kp_driving=nets["kp_detector"](driving[i:i + 1]),
                                 kp_driving_initial=initial)
            motion = nets["dense_motion_network"](source_image=source, kp_driving=kp, kp_source=kp_source,
                                                  bg_param=None, dropout_flag=False)
            out.append(nets["inpainting_network"](source, motion)["prediction"])
    return torch.cat(out).double()


def our_frames(source, driving, keypoints=None):
    """bench's exact path on the same weights; keypoints: a stand-in for its keypoint detector. [N, 3, S, S]"""
    import torch
    from fomm_core.bench.runners import make_engine
    animator = make_engine("exact", CONFIG, SIZE, "stress")
    if keypoints is not None:
        animator._run_kp = keypoints  # the one call the engine makes for keypoints
    animator.set_source(source)
    animator.reset_reference()
    with torch.no_grad():
        return animator.animate(driving).double()


def main() -> None:
    import torch
    from fomm_core.bench.weights import inputs
    torch.set_num_threads(2)
    ref, nets = original_networks()
    source, driving = inputs(SIZE, FRAMES)
    recorder = Recorder(nets["kp_detector"])
    demo = demo_frames(ref, nets, source, driving, recorder)
    f64 = loop_frames(ref, nets, source, driving, torch.float64)
    ours = our_frames(source, driving)
    rows = [("ours vs the original demo, end to end", ours, demo),
            ("ours, given the original's keypoints, vs the original demo", our_frames(source, driving, recorder.replay),
             demo),
            ("the original demo vs the same code, frames sliced contiguously",
             loop_frames(ref, nets, source, driving, torch.float32), demo),
            ("the original demo (float32) vs the original in float64", demo, f64),
            ("ours (float32) vs the original in float64", ours, f64)]
    print(f"{CONFIG}, {SIZE} px, {FRAMES} frames, stress weights; max |difference| in 0..1 "
          f"(frames' std {demo.std().item():.2f}):")
    for label, a, b in rows:
        print(f"  {label:<64} {(a - b).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
