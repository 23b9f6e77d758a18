"""Running a trained model: one engine module per family (`fomm`, `tpsmm`, `liveportrait`) on a shared base
(`engine`), the factory that settles the path and builds one (`factory`: make_animator), the measured `fast` choice
(`choice`), the int8 path (`int8`), fused inference copies of the networks (`fusion`), relative motion and the
video pipeline.

Imports `fomm_core.model`, `fomm_core.media` and the shared top level (`errors`, `device`, `tools`); never
`fomm_doctor`.
"""
