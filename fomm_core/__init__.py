"""fomm_core: a readable First Order Motion Model (Siarohin et al., 2019) and Thin-Plate Spline Motion Model
(Zhao & Zhang, 2022) — models, motion transfer, video I/O.

    model/      the networks (FOMM's; TPSMM's in model/tpsmm/) and their configs and checkpoints
    inference/  the engines (one module per family), the path factory, fused networks, int8, relative motion,
                the video pipeline
    live/       the webcam loop: a camera (or a video file) drives a photo in real time
    media/      video through ffmpeg, images, faces (the Haar cascade in media/haar.py) and crops
    train/      training, its losses and the synthetic clips
    bench/      the original code against our engines (`python -m fomm_core.bench`)

A library: it never imports `fomm_doctor`. torch is imported lazily by the modules that need it, so the public
names below are looked up on first use.
"""
__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "load_model": "fomm_core.model.checkpoint",        # load_model(checkpoint, config=None, device="cpu")
    "load_checkpoints": "fomm_core.model.checkpoint",  # the original demo's (config, checkpoint, device)
    "make_animator": "fomm_core.inference.factory",
    "Animator": "fomm_core.inference.fomm",
    "TpsAnimator": "fomm_core.inference.tpsmm",
}


def __getattr__(name):
    """The public names without importing torch until one of them is asked for."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fomm_core' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_PUBLIC[name]), name)
