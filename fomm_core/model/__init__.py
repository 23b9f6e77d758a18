"""The FOMM networks, read top to bottom: blocks -> keypoint detector -> dense motion -> generator.

`config` builds them from a YAML (shipped names such as `vox-256`), `checkpoint` loads the published files
into them strictly. Imports torch; nothing else of ours but `fomm_core.errors` and `fomm_core.resources`.
"""
