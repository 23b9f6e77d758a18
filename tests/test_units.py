"""Byte sizes as the tool shows them: decimal units, one decimal, the exact count under a kilobyte."""
import pytest

from fomm_doctor.units import byte_size


@pytest.mark.parametrize("n, shown", [
    (None, "?"), (0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1000, "1.0 kB"), (1536, "1.5 kB"),
    (999_949, "999.9 kB"), (999_960, "1.0 MB"), (728_800_000, "728.8 MB"), (1.5 * 1024 ** 3, "1.6 GB"),
    (12_345 * 10 ** 12, "12,345.0 TB"),
])
def test_byte_size(n, shown):
    assert byte_size(n) == shown
