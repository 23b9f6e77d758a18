"""fomm_core: a readable First Order Motion Model (Siarohin et al., 2019) and Thin-Plate Spline Motion Model
(Zhao & Zhang, 2022) — models, motion transfer, video I/O.

    model/      the networks (FOMM's; TPSMM's in model/tpsmm/) and their configs and checkpoints
    inference/  the engine, the fused fast path, relative motion, the video pipeline, the webcam loop
    media/      video through ffmpeg, images, faces and crops
    train/      training, its losses and the synthetic clips

A library: it never imports `fomm_doctor`. torch is imported lazily by the modules that need it.
"""
__version__ = "0.1.0"


def load_checkpoints(config_path, checkpoint_path, device="cpu"):
    """Drop-in for the original demo's `load_checkpoints`: returns `(generator, kp_detector)` in eval mode."""
    from fomm_core.model.checkpoint import load_checkpoints as _load
    return _load(config_path, checkpoint_path, device=device)


def load_model(checkpoint_path, config=None, device="cpu"):
    """A FOMM or TPSMM checkpoint loaded strictly: a Model with .family, .networks, .config, .size."""
    from fomm_core.model.checkpoint import load_model as _load
    return _load(config, checkpoint_path, device=device)


def __getattr__(name):
    """`fomm_core.Animator`, `TpsAnimator` and `make_animator` without importing torch until they are asked for."""
    if name in ("Animator", "make_animator"):
        from fomm_core.inference import engine
        return getattr(engine, name)
    if name == "TpsAnimator":
        from fomm_core.inference.tpsmm import TpsAnimator
        return TpsAnimator
    raise AttributeError(f"module 'fomm_core' has no attribute {name!r}")
