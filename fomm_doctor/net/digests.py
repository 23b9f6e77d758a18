"""What identifies a file: its sha256 (md5 where a source publishes only that), read from disk, and whether a
published value is a sha256 at all."""
import hashlib
import re

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
BLOCK = 1024 * 1024  # large enough that hashing runs at disk speed, small enough to stay out of memory


def is_sha256(value) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def file_digest(path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read a block at a time."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path) -> str:
    """file_digest's sha256, the digest nearly every caller wants."""
    return file_digest(path, "sha256")
