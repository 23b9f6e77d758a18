"""The downloader against a real 127.0.0.1 server that drops, stalls, fails and lies."""
import hashlib
import json
import socket

import pytest

from fomm_doctor.net.download import download
from fomm_doctor.net.failures import ChecksumMismatch, DownloadError, HtmlInsteadOfFile
from fomm_doctor.net.headers import retry_after_seconds
from fomm_doctor.net.job import AUTO_CONNECTIONS
from fomm_doctor.net.partfile import partial_paths
from httpfaults import Corrupt, FaultServer, Html, IgnoreRange, Pass, Reply, Reset, Stall, Status

FAST = {"backoff": 0.01, "max_wait": 0.5, "timeout": 1.0}


def blob(n: int, seed: int = 1) -> bytes:
    """Deterministic, non-repeating bytes (a repeated pattern could hide an offset bug)."""
    out, block, i = bytearray(), hashlib.sha256(str(seed).encode()).digest(), 0
    while len(out) < n:
        out += hashlib.sha256(block + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def data():
    return blob(700_000)


@pytest.fixture
def srv(data):
    with FaultServer({"/f.bin": data}) as s:
        yield s


def test_plain_download_verifies_and_places_file(srv, data, tmp_path):
    seen = []
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), size=len(data),
                   cache_dir=tmp_path / "cache", progress=lambda d, t: seen.append((d, t)), **FAST)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert res.sha256 == sha(data) and res.bytes_fetched == len(data) and not res.resumed
    assert seen[-1] == (len(data), len(data))
    assert list((tmp_path / "cache").iterdir()) == []  # part and sidecar gone


def test_connection_reset_mid_file_resumes_with_range(srv, data, tmp_path):
    srv.script("/f.bin", Reset(after=100_000), Reset(after=200_000))
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert (tmp_path / "out.bin").read_bytes() == data
    hits = srv.hits("/f.bin")
    starts = [h.range_start for h in hits]
    # a reset discards what sat in the client's socket buffer, so it resumes at or before what was sent
    assert starts[0] is None and 0 < starts[1] <= hits[0].sent and starts[1] < starts[2] <= starts[1] + hits[1].sent
    assert [h.status for h in hits] == [200, 206, 206]
    assert res.resumed and res.attempts == 3
    assert res.bytes_fetched == len(data)  # nothing fetched twice


def test_stall_longer_than_read_timeout_resumes(srv, data, tmp_path):
    srv.script("/f.bin", Stall(after=300_000, seconds=3))
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c",
                   **dict(FAST, timeout=0.5))
    assert (tmp_path / "out.bin").read_bytes() == data
    hits = srv.hits("/f.bin")
    assert len(hits) == 2 and 0 < hits[1].range_start <= hits[0].sent and hits[1].status == 206 and res.resumed


def test_503_with_retry_after_is_retried(srv, data, tmp_path):
    srv.script("/f.bin", Status(503, retry_after="0"), Status(502))
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert [h.status for h in srv.hits("/f.bin")] == [503, 502, 200]
    assert res.attempts == 3


def test_corrupted_byte_is_refused_then_refetched(srv, data, tmp_path):
    srv.script("/f.bin", Corrupt(at=12345))
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert (tmp_path / "out.bin").read_bytes() == data
    hits = srv.hits("/f.bin")
    assert [h.fault for h in hits] == ["Corrupt", None] and hits[1].range_start is None  # from scratch
    assert res.bytes_fetched == 2 * len(data)


def test_corrupted_twice_raises_one_sentence_and_leaves_nothing(srv, data, tmp_path):
    srv.script("/f.bin", Corrupt(at=5, times=None))
    with pytest.raises(ChecksumMismatch) as err:
        download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert "does not match its published sha256" in str(err.value) and str(err.value).count(". ") == 0
    assert not (tmp_path / "out.bin").exists() and list((tmp_path / "c").iterdir()) == []


def test_mirror_down_fails_over_to_next(srv, data, tmp_path):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: connection refused
    with FaultServer({"/f.bin": data}) as broken:
        broken.script("/f.bin", Status(503, times=None))
        res = download([f"http://127.0.0.1:{dead_port}/f.bin", broken.url("/f.bin"), srv.url("/f.bin")],
                       tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", retries=2, **FAST)
        assert len(broken.hits()) == 2
    assert res.url_used == srv.url("/f.bin") and (tmp_path / "out.bin").read_bytes() == data


def test_404_fails_over_at_once_and_all_dead_raises(srv, data, tmp_path):
    res = download([srv.url("/missing"), srv.url("/f.bin")], tmp_path / "o", cache_dir=tmp_path / "c", **FAST)
    assert len(srv.hits("/missing")) == 1 and res.url_used.endswith("/f.bin")
    with pytest.raises(DownloadError) as err:
        download([srv.url("/missing")], tmp_path / "o2", cache_dir=tmp_path / "c", **FAST)
    assert "HTTP 404" in str(err.value) and err.value.reason == "the server answered HTTP 404"
    assert not err.value.retryable and "run the same command again" not in str(err.value)  # a 404 stays a 404


def test_a_server_that_keeps_failing_says_run_again(data, tmp_path):
    with FaultServer({"/f.bin": data}) as s:
        s.script("/f.bin", Status(503, times=None))
        with pytest.raises(DownloadError) as err:
            download([s.url("/f.bin")], tmp_path / "o", cache_dir=tmp_path / "c", retries=2, **FAST)
    assert err.value.retryable and err.value.reason == "the server answered HTTP 503"
    assert str(err.value).endswith("run the same command again to continue where it stopped.")


def test_drop_after_resume_against_server_without_range_restarts(data, tmp_path):
    with FaultServer({"/f.bin": data}, ranges=False) as s:
        s.script("/f.bin", Reset(after=200_000))
        res = download([s.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
        hits = s.hits("/f.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert 0 < hits[1].range_start <= hits[0].sent and hits[1].status == 200  # asked to resume, got the whole file
    assert not res.resumed


def test_ctrl_c_keeps_partial_and_second_run_continues(srv, data, tmp_path):
    cache = tmp_path / "c"

    def interrupt(done, total):
        if done >= 300_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=cache, progress=interrupt,
                 **FAST)
    part, side = partial_paths([srv.url("/f.bin")], sha(data), cache)
    kept = part.stat().st_size
    assert kept >= 300_000 and json.loads(side.read_text())["size"] == len(data)
    assert not (tmp_path / "out.bin").exists()
    res = download([srv.url("/f.bin")], tmp_path / "out.bin", sha256=sha(data), cache_dir=cache, **FAST)
    assert srv.hits("/f.bin")[-1].range_start == kept and res.resumed and res.bytes_fetched == len(data) - kept
    assert (tmp_path / "out.bin").read_bytes() == data


def test_parallel_connections_byte_identical_with_faults(data, tmp_path):
    big = blob(2_000_000, seed=7)
    with FaultServer({"/big": big}) as s:
        s.script("/big", Status(503, retry_after="0"), Reset(after=50_000), Reset(after=70_000))
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(big), cache_dir=tmp_path / "c",
                       connections=4, **FAST)
        ranges = [h.range for h in s.hits("/big") if h.status == 206]
    assert (tmp_path / "big").read_bytes() == big and res.sha256 == sha(big)
    assert "bytes=0-0" in ranges and len({r for r in ranges if r != "bytes=0-0"}) >= 4
    assert res.resumed  # a dropped range continued from its offset


def test_parallel_ctrl_c_then_resume_in_parallel(tmp_path):
    big = blob(2_000_000, seed=3)
    cache = tmp_path / "c"
    with FaultServer({"/big": big}, throttle=2_000_000) as s:
        def interrupt(done, total):
            if done > 600_000:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            download([s.url("/big")], tmp_path / "big", sha256=sha(big), cache_dir=cache, connections=3,
                     progress=interrupt, **FAST)
        side = json.loads(partial_paths([s.url("/big")], sha(big), cache)[1].read_text())
        done_before = sum(seg[2] for seg in side["segments"])
        assert done_before > 0
        n_before = len(s.hits())
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(big), cache_dir=cache, connections=3, **FAST)
        later = s.hits()[n_before:]
    assert (tmp_path / "big").read_bytes() == big
    assert res.resumed and res.bytes_fetched <= len(big) - done_before + 3 * 64 * 1024
    assert all(h.range != "bytes=0-0" for h in later)  # no new probe: continued the recorded ranges


def test_parallel_against_server_without_range_falls_back(tmp_path):
    big = blob(1_000_000, seed=5)
    with FaultServer({"/big": big}, ranges=False) as s:
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(big), cache_dir=tmp_path / "c",
                       connections=4, **FAST)
        assert [h.status for h in s.hits()] == [200, 200]
    assert (tmp_path / "big").read_bytes() == big and not res.resumed


def test_range_ignored_midway_in_parallel_restarts_single(tmp_path):
    big = blob(1_000_000, seed=9)
    with FaultServer({"/big": big}) as s:
        s.script("/big", Pass(), IgnoreRange(times=None))  # the probe sees ranges, the workers do not
        download([s.url("/big")], tmp_path / "big", sha256=sha(big), cache_dir=tmp_path / "c", connections=2,
                 **FAST)
        hits = s.hits()
    assert (tmp_path / "big").read_bytes() == big
    assert hits[0].status == 206 and hits[-1].status == 200 and hits[-1].range is None  # restarted whole


def test_html_instead_of_file(srv, tmp_path):
    srv.script("/f.bin", Html())
    with pytest.raises(HtmlInsteadOfFile) as err:
        download([srv.url("/f.bin")], tmp_path / "o", cache_dir=tmp_path / "c", expect_binary=True, **FAST)
    assert "Virus scan" in err.value.response_text_head and err.value.url == srv.url("/f.bin")

    # an HTML body behind a binary content type is caught too; a confirmation flow through a callable works
    page = b"  <!doctype html><form action='/confirm'>Download anyway</form>"
    s2 = FaultServer({"/page": lambda req: Reply(200, page, {"Content-Type": "application/octet-stream"})}).start()
    try:
        with pytest.raises(HtmlInsteadOfFile):
            download([s2.url("/page")], tmp_path / "o", cache_dir=tmp_path / "c", expect_binary=True, **FAST)
    finally:
        s2.stop()
    assert list((tmp_path / "c").iterdir()) == []


def test_wrong_size_on_a_mirror_is_skipped(srv, data, tmp_path):
    with FaultServer({"/f.bin": data[:-10]}) as other:
        res = download([other.url("/f.bin"), srv.url("/f.bin")], tmp_path / "o", size=len(data),
                       cache_dir=tmp_path / "c", **FAST)
    assert res.url_used == srv.url("/f.bin") and (tmp_path / "o").read_bytes() == data


def test_existing_verified_file_is_not_fetched_again(srv, data, tmp_path):
    (tmp_path / "o").write_bytes(data)
    res = download([srv.url("/f.bin")], tmp_path / "o", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert res.bytes_fetched == 0 and srv.hits() == []


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 59 <= retry_after_seconds("Wed, 21 Oct 2015 07:29:00 GMT", now=1445412480.0) <= 60


# ---- auto mode (no `connections` argument): parallel ranges for large files when the server does ranges

BIG = 9 * 1024 * 1024  # just over AUTO_MIN_SIZE
CALM = dict(FAST, timeout=10.0)  # exact request counts below: no read timeout on a busy test machine


@pytest.fixture(scope="module")
def large():
    return blob(BIG, seed=11)


@pytest.mark.parametrize("known_size", [True, False])
def test_auto_large_file_comes_in_parallel_ranges(large, tmp_path, known_size):
    # throttled (not for timing) so that what the server "sent" on a closed connection is close to what was read
    with FaultServer({"/big": large}, throttle=20_000_000) as s:
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large) if known_size else None,
                       cache_dir=tmp_path / "c", **CALM)
        hits = s.hits("/big")
    assert (tmp_path / "big").read_bytes() == large and res.sha256 == sha(large)
    ranged = [h for h in hits if h.status == 206]
    if known_size:  # the first request already asked for a range, to learn whether the server does ranges
        assert hits[0].range == "bytes=0-" and len(ranged) == AUTO_CONNECTIONS
    else:  # no size: a plain first request whose Accept-Ranges invited the split, the other ranges 206
        assert hits[0].range is None and hits[0].status == 200 and len(ranged) == AUTO_CONNECTIONS - 1
    starts = {h.range_start or 0 for h in hits}
    assert len(hits) == AUTO_CONNECTIONS and len(starts) == AUTO_CONNECTIONS  # no probe, no request wasted
    assert 0 in starts and all(0 <= x < len(large) for x in starts)
    assert res.bytes_fetched == len(large) and not res.resumed
    assert hits[0].sent < len(large)  # the open-ended first answer was closed at the end of its range
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("known_size", [True, False])
def test_auto_server_without_ranges_uses_one_request(large, tmp_path, known_size):
    with FaultServer({"/big": large}, ranges=False) as s:
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large) if known_size else None,
                       cache_dir=tmp_path / "c", **CALM)
        hits = s.hits("/big")
    assert [h.status for h in hits] == [200] and hits[0].sent == len(large)
    assert (tmp_path / "big").read_bytes() == large and res.attempts == 1 and not res.resumed


def test_auto_accept_ranges_none_means_one_connection(large, tmp_path):
    # the server would answer ranges, but says it does not: believe it
    route = lambda req: Reply(200, large, {"Accept-Ranges": "none"})  # noqa: E731
    with FaultServer({"/big": route}) as s:
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large),
                       cache_dir=tmp_path / "c", **CALM)
        hits = s.hits("/big")
    assert len(hits) == 1 and hits[0].range_start == 0 and res.attempts == 1
    assert (tmp_path / "big").read_bytes() == large


@pytest.mark.parametrize("known_size", [True, False])
def test_auto_small_file_uses_one_request(srv, data, tmp_path, known_size):
    res = download([srv.url("/f.bin")], tmp_path / "o", sha256=sha(data), size=len(data) if known_size else None,
                   cache_dir=tmp_path / "c", **CALM)
    hits = srv.hits("/f.bin")
    assert [(h.status, h.range) for h in hits] == [(200, None)] and res.attempts == 1
    assert (tmp_path / "o").read_bytes() == data


def test_auto_explicit_one_connection_stays_single(large, tmp_path):
    with FaultServer({"/big": large}) as s:
        download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large), connections=1,
                 cache_dir=tmp_path / "c", **CALM)
        assert [(h.status, h.range) for h in s.hits("/big")] == [(200, None)]
    assert (tmp_path / "big").read_bytes() == large


def test_auto_reset_during_parallel_ranges_is_resumed(large, tmp_path):
    with FaultServer({"/big": large}) as s:
        s.script("/big", Pass(), Reset(after=300_000), Reset(after=500_000))  # two of the ranges drop midway
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large),
                       cache_dir=tmp_path / "c", **CALM)
        hits = s.hits("/big")
    assert (tmp_path / "big").read_bytes() == large and res.resumed
    step = -(-len(large) // AUTO_CONNECTIONS)
    first_starts = {i * step for i in range(AUTO_CONNECTIONS)}
    dropped = [h for h in hits if h.fault == "Reset"]
    later = [h for h in hits if h.range_start not in first_starts]
    # later requests: the two resumes, and the halves of ranges a finished connection took over
    assert len(dropped) == 2 and len(later) >= 2
    for d in dropped:  # each drop continued its own range from (at most) where the server had got to
        assert any(d.range_start < h.range_start <= d.range_start + d.sent for h in later)
    assert all(h.status == 206 for h in hits)


def test_auto_ctrl_c_then_resume_continues_recorded_ranges(large, tmp_path):
    cache = tmp_path / "c"
    with FaultServer({"/big": large}, throttle=4_000_000) as s:
        def interrupt(done, total):
            if done > 2_000_000:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large), cache_dir=cache,
                     progress=interrupt, **CALM)
        side = json.loads(partial_paths([s.url("/big")], sha(large), cache)[1].read_text())
        assert len(side["segments"]) == AUTO_CONNECTIONS
        done_before = sum(seg[2] for seg in side["segments"])
        assert 0 < done_before < len(large)
        n_before = len(s.hits())
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), size=len(large), cache_dir=cache,
                       **CALM)
        later = s.hits()[n_before:]
    assert (tmp_path / "big").read_bytes() == large
    resume_at = {seg[0] + seg[2] for seg in side["segments"] if seg[0] + seg[2] < seg[1]}
    assert {h.range_start for h in later} == resume_at and all(h.status == 206 for h in later)
    assert res.resumed and res.bytes_fetched == len(large) - done_before


def test_auto_ranges_ignored_after_first_answer_falls_back_to_one_connection(large, tmp_path):
    # Accept-Ranges: bytes on the first (plain) answer invites the split; the ranges then come back whole
    with FaultServer({"/big": large}) as s:
        s.script("/big", Pass(), IgnoreRange(times=None))
        res = download([s.url("/big")], tmp_path / "big", sha256=sha(large), cache_dir=tmp_path / "c", **CALM)
        hits = s.hits("/big")
    assert (tmp_path / "big").read_bytes() == large and res.sha256 == sha(large)
    assert hits[0].range is None and hits[-1].range is None and hits[-1].status == 200 and len(hits) >= 3


def test_auto_html_in_first_range_is_caught(tmp_path):
    page = b"<!DOCTYPE html><html><body>quota exceeded</body></html>" + b" " * BIG
    with FaultServer({"/big": page}) as s:  # served as application/octet-stream
        with pytest.raises(HtmlInsteadOfFile):
            download([s.url("/big")], tmp_path / "big", cache_dir=tmp_path / "c", expect_binary=True, **CALM)
    assert list((tmp_path / "c").iterdir()) == [] and not (tmp_path / "big").exists()


def test_downloads_dir_keeps_the_linux_paths_and_the_override(monkeypatch, tmp_path):
    import platformdirs.unix
    import fomm_core.cache
    monkeypatch.setattr(fomm_core.cache, "PlatformDirs", platformdirs.unix.Unix)
    monkeypatch.delenv("FOMM_DOCTOR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fomm_core.cache.downloads_dir() == tmp_path / "xdg" / "fomm-doctor" / "downloads"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fomm_core.cache.downloads_dir() == tmp_path / "home" / ".cache" / "fomm-doctor" / "downloads"
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "mine"))
    assert fomm_core.cache.downloads_dir() == tmp_path / "mine" / "downloads"
