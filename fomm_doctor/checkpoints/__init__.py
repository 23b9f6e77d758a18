"""Model checkpoints: the manifest of published files, the user's registry, fetching from the published
sources, judging a file on disk. Imports `fomm_doctor.net` and `fomm_core.model`.
"""
