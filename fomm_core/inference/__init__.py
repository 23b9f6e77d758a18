"""Running a trained model: the engine (source encoded once, frames batched), the fused fast path, relative
motion, the video pipeline and the webcam loop.

Imports `fomm_core.model`, `fomm_core.media` and the shared top level (`errors`, `device`, `tools`); never
`fomm_doctor`.
"""
