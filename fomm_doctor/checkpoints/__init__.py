"""Model checkpoints. One question per module:
  places    where checkpoint files and their JSON live (the per-user folder, --dir, the project's own),
  manifest  the published checkpoints and what is published about each file,
  files     judging a file on disk (sha256, published facts, what config it fits),
  store     the user's registry, listing, and resolving a name or path (`resolve_checkpoint`),
  sets      checkpoints published as a set of files in one folder (LivePortrait): the manifest's `files`, judging,
            locating a set in a folder,
  sources   where a source is asked for (HF_ENDPOINT, --mirror) and why one failed,
  fetch     downloading a published checkpoint from its sources (setfetch: a set, file by file),
  add       registering a file (or a set's folder) the user has,
  slim      an inference-only copy.
Imports `fomm_doctor.net` and `fomm_core.model`.
"""
from fomm_doctor.checkpoints.store import BUNDLED, ResolvedCheckpoint, bundled_checkpoint, resolve_checkpoint

__all__ = ["BUNDLED", "ResolvedCheckpoint", "bundled_checkpoint", "resolve_checkpoint"]
