"""Training FOMM: `python -m fomm_core.train` (trainer), its losses, the random TPS warps of the
equivariance loss, and the procedural synthetic clips (also the demo's driving video).
"""
