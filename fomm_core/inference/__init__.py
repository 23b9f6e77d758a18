"""Running a trained model: the engine (source encoded once, frames batched), the fused fast path, relative
motion, the video pipeline, the webcam loop and the device/precision policy they all share.

Imports `fomm_core.model` and `fomm_core.media`; never `fomm_doctor`.
"""
