"""Model checkpoints. One question per module:
  places    where checkpoint files and their JSON live (the per-user folder, --dir, the project's own),
  manifest  the published checkpoints and what is published about each file,
  files     judging a file on disk (sha256, published facts, what config it fits),
  store     the user's registry, listing, and resolving a name or path (`resolve_checkpoint`),
  fetch     downloading a published checkpoint from its sources,
  add       registering a file the user has,
  slim      an inference-only copy.
Imports `fomm_doctor.net` and `fomm_core.model`.
"""
from fomm_doctor.checkpoints.store import BUNDLED, ResolvedCheckpoint, bundled_checkpoint, resolve_checkpoint

__all__ = ["BUNDLED", "ResolvedCheckpoint", "bundled_checkpoint", "resolve_checkpoint"]
