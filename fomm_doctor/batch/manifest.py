"""The batch's record in its output folder: `manifest.jsonl`, one JSON object per finished job, appended (and
flushed to disk) the moment the job finishes, so a run killed at any point loses at most the jobs in flight.

    {"job": "alice__talk1.mp4", "status": "done", "seconds": 3.1, "sha256": "9f2c...", "frames": 250, ...}

status: `done` (the output is written, and its sha256 recorded), `failed` (the job's own input or settings are
wrong: its `error` sentence says which; a rerun skips it while its inputs are unchanged) or `error` (something
outside the job: a worker that died, memory; a rerun tries it again). `key` is a digest of the job's settings and
of its inputs' sizes and times: change a photo, a flag or the checkpoint, and the job is new.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from fomm_doctor.net.digests import file_sha256

MANIFEST = "manifest.jsonl"
DONE, FAILED, ERROR = "done", "failed", "error"


@dataclass
class Record:
    job: str                   # the output's name inside the folder: unique within a batch
    status: str                # DONE, FAILED or ERROR
    key: str                   # job_key(): settings and inputs
    seconds: float = 0.0
    sha256: str = ""
    frames: int = 0
    error: str = ""            # the one sentence, for FAILED and ERROR
    source: str = ""
    driving: str = ""
    row: int = 0
    worker: str = ""           # which machine and process ran it, and on what (host, pid, torch, device)
    notes: list = field(default_factory=list)  # what animate warned of (no face found: the centre square used)
    finished: str = ""         # UTC, ISO 8601

    @classmethod
    def from_dict(cls, data: dict) -> Optional["Record"]:
        """A record from one parsed line, or None for a line this version cannot use (wrong types, no job)."""
        try:
            record = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError:
            return None
        ok = isinstance(record.job, str) and record.status in (DONE, FAILED, ERROR) and isinstance(record.key, str)
        return record if ok and isinstance(record.sha256, str) else None


def fingerprint(path) -> list:
    """[size, mtime in ns] of a file, or ['missing']: cheap enough for thousands of inputs, and what make uses."""
    try:
        st = os.stat(path)
    except OSError:
        return ["missing"]
    return [st.st_size, st.st_mtime_ns]


def job_key(settings: dict, inputs: dict) -> str:
    """A digest of what shapes a job's result: its settings, and {name: fingerprint} of the files it reads."""
    text = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def read_manifest(folder: Path) -> dict[str, Record]:
    """The last record of each job; a torn last line (a run killed mid-write) or a foreign line is skipped."""
    latest: dict[str, Record] = {}
    try:
        with open(Path(folder) / MANIFEST, "rb") as f:
            for raw in f:
                try:
                    data = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    continue
                record = Record.from_dict(data) if isinstance(data, dict) else None
                if record is not None:
                    latest[record.job] = record
    except FileNotFoundError:
        pass
    return latest


def verified(record: Optional[Record], folder: Path, key: str) -> bool:
    """The job is done with these settings and inputs, and its output is still the file recorded."""
    if record is None or record.status != DONE or record.key != key or len(record.sha256) != 64:
        return False
    path = Path(folder) / record.job
    return path.is_file() and file_sha256(path) == record.sha256


class ManifestWriter:
    """Appends records, each on disk (flushed, fsynced) before the next job's result is taken."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / MANIFEST
        self._file = open(self.path, "ab")
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write(b"\n")  # a killed run left half a line: start on a fresh one

    def add(self, record: Record) -> None:
        line = json.dumps(asdict(record), ensure_ascii=False, sort_keys=False) + "\n"
        self._file.write(line.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
