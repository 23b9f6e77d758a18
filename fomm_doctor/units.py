"""Byte sizes as people read them: the one spelling of every size the tool shows (downloads, files on disk,
free space, memory). It imports nothing of ours, so any folder may use it.

Decimal units (1 MB = 1,000,000 bytes), as pip, browsers and file managers show download and file sizes: the
number printed here is the one the user sees for the same file there.
"""
from typing import Optional

_UNITS = ("kB", "MB", "GB", "TB")


def byte_size(n: Optional[float]) -> str:
    """12_345_678 -> '12.3 MB'; under a kilobyte the count itself ('512 bytes'); None (unknown) -> '?'."""
    if n is None:
        return "?"
    if abs(n) < 1000:
        return f"{n:,.0f} byte{'' if n == 1 else 's'}"
    for unit in _UNITS:
        n /= 1000
        if abs(n) < 999.95 or unit == _UNITS[-1]:  # 999.96 would round to '1,000.0': the next unit says it
            break
    return f"{n:,.1f} {unit}"
