"""The batch's record in its output folder: `manifest.jsonl`, one JSON object per finished job, appended (and
flushed to disk) the moment the job finishes, so a run killed at any point loses at most the jobs in flight.

    {"job": "alice__talk1.mp4", "status": "done", "seconds": 3.1, "sha256": "9f2c...", "frames": 250, ...}

status: `done` (the output is written, and its sha256 recorded), `failed` (the job's own input or settings are
wrong: its `error` sentence says which; a rerun skips it while its inputs are unchanged) or `error` (something
outside the job: a worker that died, memory; a rerun tries it again). `key` is a digest of the job's settings and
of its inputs' sizes and times: change a photo, a flag or the checkpoint, and the job is new. `sig` binds the
record to its folder and user (fomm_doctor.batch.seal): a record that does not verify is ignored.

The manifest is opened never through a link and only as a plain file. A name the OS gave that is not valid
UTF-8 (Python's surrogate escapes) is written as a JSON \\udcXX escape, so the line stays UTF-8 and reads back
as the same name.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from fomm_core.private import open_plain
from fomm_doctor.errors import UserError
from fomm_doctor.net.digests import file_sha256

MANIFEST = "manifest.jsonl"
DONE, FAILED, ERROR = "done", "failed", "error"
MAX_LINE = 1024 * 1024  # a record is a few hundred bytes: a longer line is not one of ours
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    sig: str = ""              # fomm_doctor.batch.seal: this folder's and this user's record

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


def read_manifest(folder: Path, seal=None) -> dict[str, Record]:
    """The last record of each job (with a seal: the last that verifies)."""
    return read_records(folder, seal)[0]


def read_records(folder: Path, seal=None) -> tuple[dict[str, Record], int]:
    """({job: its last record}, how many records did not verify); a torn last line (a run killed mid-write) or a
    foreign line is skipped."""
    latest: dict[str, Record] = {}
    ignored = 0
    try:
        fd = _open(Path(folder) / MANIFEST, os.O_RDONLY)
    except FileNotFoundError:
        return latest, 0
    with os.fdopen(fd, "rb") as f:
        while raw := f.readline(MAX_LINE):
            if not raw.endswith(b"\n") and len(raw) == MAX_LINE:
                while (more := f.readline(MAX_LINE)) and not more.endswith(b"\n"):
                    pass
                continue
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            record = Record.from_dict(data) if isinstance(data, dict) else None
            if record is None:
                continue
            if seal is not None and not seal.verifies(_fields(record), record.sig):
                ignored += 1
                continue
            latest[record.job] = record
    return latest, ignored


def verified(record: Optional[Record], folder: Path, key: str) -> bool:
    """The job is done with these settings and inputs, and its output is still the file recorded (a plain file
    at its name, not a link to one)."""
    if record is None or record.status != DONE or record.key != key or len(record.sha256) != 64:
        return False
    path = Path(folder) / record.job
    try:
        plain = stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
    return plain and file_sha256(path) == record.sha256


def line_of(record: Record) -> bytes:
    """One record as a UTF-8 line; a surrogate escape becomes a JSON \\udcXX escape, which reads back as itself."""
    text = json.dumps(asdict(record), ensure_ascii=False, sort_keys=False)
    return (_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n").encode("utf-8")


def _fields(record: Record) -> dict:
    fields = asdict(record)
    fields.pop("sig")
    return fields


def _open(path: Path, flags: int) -> int:
    """The manifest as a plain file, never what a link at its name points to."""
    try:
        return open_plain(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise _unusable(path, "is a link") from None
        if exc.errno == errno.EINVAL:
            raise _unusable(path, "is not a plain file") from None
        raise UserError(f"{path} could not be opened ({exc.strerror or exc}); the output folder must be "
                        "writable.") from None


def _unusable(path: Path, why: str) -> UserError:
    return UserError(f"{path} {why}; a batch keeps its manifest as a plain file in its output folder, so remove "
                     "it (a link's target is left alone), or give another output folder.")


class ManifestWriter:
    """Appends records, each on disk (flushed, fsynced) before the next job's result is taken; with a seal, each
    record is signed for this folder."""

    def __init__(self, folder: Path, seal=None):
        self.path = Path(folder) / MANIFEST
        self.seal = seal
        self._fd = _open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(self._fd).st_size
            if size > 0:
                os.lseek(self._fd, size - 1, os.SEEK_SET)
                if os.read(self._fd, 1) != b"\n":
                    self._write(b"\n")  # a killed run left half a line: start on a fresh one
        except BaseException:
            os.close(self._fd)
            raise

    def add(self, record: Record) -> None:
        if self.seal is not None:
            record.sig = self.seal.sign(_fields(record))
        self._write(line_of(record))

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            raise UserError(f"could not write {self.path} ({exc.strerror or exc}); what finished before is kept "
                            "there: free some space, then run the same command again.") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
