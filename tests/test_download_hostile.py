"""The downloader against servers and inputs that mean harm: endless bodies, gzip bombs, lying headers,
path tricks, two runs at once and credentials that must not travel. Every failure is one sentence."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from fomm_doctor.net.download import download
from fomm_doctor.net.failures import DownloadError
from fomm_doctor.net.headers import parse_content_range, retry_after_seconds
from fomm_doctor.net.partfile import partial_paths
from httpfaults import FaultServer, RawServer, Reply, Status, endless_answer, fixed_answer, gzip_zeros
from test_download import FAST, blob, sha

REPO = Path(__file__).resolve().parents[1]
OCTET = ("Content-Type", "application/octet-stream")


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and "\n" not in text and "Traceback" not in text


def files_under(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# ---- 1. size bounds --------------------------------------------------------------------------------------------

def test_endless_body_for_a_small_file_stops_at_its_size(tmp_path):
    with RawServer(endless_answer([OCTET])) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", size=1000, cache_dir=tmp_path / "c", **FAST)
        sent = srv.sent
    assert "sends more than the 1,000 bytes the file has" in str(err.value) and one_sentence(str(err.value))
    assert sent < 256 * 1024 * 1024  # the client hung up long before the server's own end
    assert not (tmp_path / "o").exists() and list((tmp_path / "c").iterdir()) == []


def test_endless_body_without_any_size_stops_at_max_size(tmp_path):
    with RawServer(endless_answer([OCTET])) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", max_size=1_000_000, cache_dir=tmp_path / "c", **FAST)
        sent = srv.sent
    assert "more than the 1,000,000 bytes" in str(err.value) and one_sentence(str(err.value))
    assert sent < 256 * 1024 * 1024
    assert not (tmp_path / "o").exists() and list((tmp_path / "c").iterdir()) == []


def test_body_longer_than_its_range_moves_to_the_next_mirror(tmp_path):
    data = blob(50_000)
    # a 206 that says 50,000 bytes and then keeps going: the extra bytes are not the file
    liar = endless_answer([OCTET, ("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")], fill=data)
    with RawServer(liar) as bad, FaultServer({"/f": data}) as good:
        res = download([bad.url("/f"), good.url("/f")], tmp_path / "o", sha256=sha(data), size=len(data),
                       cache_dir=tmp_path / "c", **FAST)
        assert res.url_used == good.url("/f") and len(bad.requests) == 1
    assert (tmp_path / "o").read_bytes() == data


def test_not_enough_disk_space_is_one_sentence_before_any_byte(tmp_path):
    huge = 2 ** 50  # a pebibyte: more than any disk this runs on
    with RawServer(endless_answer([OCTET])) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", size=huge, max_size=2 ** 60, cache_dir=tmp_path / "c", **FAST)
    text = str(err.value)
    assert "needs" in text and "free" in text and one_sentence(text)
    assert list((tmp_path / "c").iterdir()) == []


def test_announced_size_beyond_the_disk_is_one_sentence(tmp_path):
    answer = fixed_answer([OCTET, ("Content-Length", str(2 ** 50))], b"x" * 1000)
    with RawServer(answer) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", max_size=2 ** 60, cache_dir=tmp_path / "c", **FAST)
    assert "free" in str(err.value) and one_sentence(str(err.value))


# ---- 2. compressed answers are refused, not unpacked -------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb():
    return gzip_zeros(100 * 1024 * 1024)


def test_gzip_bomb_is_refused_not_unpacked(tmp_path, bomb):
    answer = fixed_answer([OCTET, ("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))], bomb)
    with RawServer(answer) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", **FAST)
        assert srv.requests[0].headers.get("accept-encoding") == "identity"
    text = str(err.value)
    assert "compressed body (Content-Encoding: gzip)" in text and one_sentence(text)
    assert not (tmp_path / "o").exists() and list((tmp_path / "c").iterdir()) == []


def test_compressed_mirror_is_skipped_for_the_next(tmp_path, bomb):
    data = blob(100_000)
    answer = fixed_answer([OCTET, ("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))], bomb)
    with RawServer(answer) as bad, FaultServer({"/f": data}) as good:
        res = download([bad.url("/f"), good.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", **FAST)
        assert res.url_used == good.url("/f") and len(bad.requests) == 1
    assert (tmp_path / "o").read_bytes() == data


# ---- 3. unreadable headers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_range", ["bytes abc", "bytes 0-9/xyz", "bytes 5-2/10", None,
                                           f"bytes 0-9/{10 ** 30}", "bytes 0-9/" + "9" * 5000])
def test_unreadable_content_range_is_a_sentence(tmp_path, content_range):
    headers = [OCTET, ("Content-Length", "10")] + ([("Content-Range", content_range)] if content_range else [])
    with RawServer(fixed_answer(headers, b"0123456789", status="206 Partial Content")) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", retries=2, **FAST)
    assert one_sentence(str(err.value))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("length", ["abc", "\u00b2", "12, 12", "9" * 5000, "-5"])
def test_unreadable_content_length_does_not_crash(tmp_path, length):
    data = b"0123456789ab"
    with RawServer(fixed_answer([OCTET, ("Content-Length", length)], data)) as srv:
        try:
            res = download([srv.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", retries=2, **FAST)
        except DownloadError as exc:
            assert one_sentence(str(exc))
        else:
            assert (tmp_path / "o").read_bytes() == data and res.sha256 == sha(data)


def test_unreadable_retry_after_is_retried_not_a_crash(tmp_path):
    data = blob(10_000)
    with FaultServer({"/f": data}) as srv:
        srv.script("/f", Status(503, retry_after="\u00b2"), Status(503, retry_after="9" * 500))
        res = download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=tmp_path / "c",
                       **dict(FAST, max_wait=0.05))
    assert res.attempts == 3 and (tmp_path / "o").read_bytes() == data


@given(st.text())
def test_retry_after_never_raises(text):
    wait = retry_after_seconds(text, now=0.0)
    assert wait is None or wait >= 0


@given(st.text())
def test_parse_content_range_never_raises(text):
    parsed = parse_content_range(text)
    if parsed is not None:
        start, end, total = parsed
        assert 0 <= start <= end and (total is None or end < total)


@given(st.from_regex(r"\s*[bB]ytes [0-9a-z*\u0660-\u0669]{0,4}-[0-9*\u00b2]{0,4}/[0-9*x]{0,4}\s*", fullmatch=True))
def test_parse_content_range_near_misses_never_raise(text):
    parsed = parse_content_range(text)
    assert parsed is None or (parsed[0] <= parsed[1] and (parsed[2] is None or parsed[1] < parsed[2]))


@given(st.integers(0, 10 ** 30), st.integers(0, 10 ** 30), st.one_of(st.none(), st.integers(1, 10 ** 30)))
def test_parse_content_range_round_trips(start, length, extra):
    end = start + length
    total = None if extra is None else end + extra
    assert parse_content_range(f"bytes {start}-{end}/{'*' if total is None else total}") == (start, end, total)


# ---- 4. the cache folder cannot be written -------------------------------------------------------------------------

def test_cache_dir_that_is_a_file_is_one_sentence(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with FaultServer({"/f": b"data"}) as srv:
        for cache in (blocker, blocker / "sub"):
            with pytest.raises(DownloadError) as err:
                download([srv.url("/f")], tmp_path / "o", cache_dir=cache, **FAST)
            assert "is a file, not a folder" in str(err.value) and one_sentence(str(err.value))
    assert blocker.read_text() == "not a folder"


def test_part_file_that_cannot_be_written_is_one_sentence(tmp_path):
    data = blob(10_000)
    part, _ = partial_paths([], sha(data), tmp_path / "c")
    part.mkdir(parents=True)  # a folder where the part file goes: every write to it fails, even as root
    with FaultServer({"/f": data}) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
    assert one_sentence(str(err.value)) and not (tmp_path / "o").exists()


# ---- 5. names that would leave the cache ---------------------------------------------------------------------------

def test_sha256_with_a_path_in_it_is_refused_and_touches_nothing(tmp_path):
    victim = tmp_path / "victim.part"
    victim.write_bytes(b"keep me")
    data = blob(1000)
    before = files_under(tmp_path)
    with FaultServer({"/f": data}) as srv:
        for bad in ("../../victim", "../victim", "a" * 63 + "/", "g" * 64, sha(data) + "0"):
            with pytest.raises(DownloadError) as err:
                download([srv.url("/f")], tmp_path / "o", sha256=bad, cache_dir=tmp_path / "a" / "c", **FAST)
            assert "is not a sha256" in str(err.value) and one_sentence(str(err.value))
        assert srv.hits() == []
    assert victim.read_bytes() == b"keep me" and files_under(tmp_path) == before


def test_part_file_that_links_out_of_the_cache_is_refused(tmp_path):
    data = blob(100_000)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    cache = tmp_path / "c"
    part, sidecar = partial_paths([], sha(data), cache)
    cache.mkdir()
    part.symlink_to(outside)
    sidecar.write_text(json.dumps({"url": "x", "size": len(data)}))
    with FaultServer({"/f": data}) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=cache, **FAST)
    assert "outside" in str(err.value) and one_sentence(str(err.value))
    assert outside.read_bytes() == b"precious"


@pytest.mark.parametrize("dest", ["sub/..", ".", "", "folder"])
def test_dest_that_is_no_file_name_is_refused(tmp_path, dest, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    with FaultServer({"/f": b"data"}) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], Path(dest), cache_dir=tmp_path / "c", **FAST)
        assert srv.hits() == []
    assert one_sentence(str(err.value)) and files_under(tmp_path / "folder") == set()


# ---- 6. two runs of the same download at once ----------------------------------------------------------------------

CHILD = """
import json, sys, time
from pathlib import Path
from fomm_doctor.net.download import download
from fomm_doctor.net.failures import DownloadError
url, dest, cache, ready, go, lock_wait, sha = sys.argv[1:]
Path(ready).touch()
for _ in range(3000):  # both children start downloading together
    if Path(go).exists():
        break
    time.sleep(0.01)
try:
    r = download([url], dest, cache_dir=cache, sha256=sha or None, lock_wait=float(lock_wait), backoff=0.01,
                 max_wait=0.5, timeout=30)
    print(json.dumps({"ok": True, "fetched": r.bytes_fetched}))
except DownloadError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def start_child(tmp_path, name, url, dest, cache, lock_wait, sha256=""):
    args = [sys.executable, "-c", CHILD, url, str(dest), str(cache), str(tmp_path / f"{name}.ready"),
            str(tmp_path / "go"), str(lock_wait), sha256]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def wait_for(condition, seconds=60.0):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.02)


def run_two(tmp_path, url, dests, lock_wait, sha256=""):
    cache = tmp_path / "cache"
    procs = [start_child(tmp_path, f"p{i}", url, d, cache, lock_wait, sha256) for i, d in enumerate(dests)]
    wait_for(lambda: all((tmp_path / f"p{i}.ready").exists() for i in range(len(procs))))
    (tmp_path / "go").touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "Traceback" not in err, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


def test_two_processes_same_file_no_sha_never_corrupt(tmp_path):
    data = blob(2_000_000, seed=21)
    with FaultServer({"/f": data}, throttle=1_000_000) as srv:
        outcomes = run_two(tmp_path, srv.url("/f"), [tmp_path / "o1", tmp_path / "o2"], lock_wait=0.3)
    for i, outcome in enumerate(outcomes):
        if outcome["ok"]:
            assert (tmp_path / f"o{i + 1}").read_bytes() == data
        else:
            text = outcome["error"]
            assert "another download of o" in text and "is running (in process " in text and one_sentence(text)
            assert not (tmp_path / f"o{i + 1}").exists()
    assert any(o["ok"] for o in outcomes)
    assert not list((tmp_path / "cache").glob("*.lock"))


def test_two_processes_same_file_second_waits_and_finds_it_done(tmp_path):
    data = blob(1_500_000, seed=22)
    with FaultServer({"/f": data}, throttle=1_000_000) as srv:
        outcomes = run_two(tmp_path, srv.url("/f"), [tmp_path / "o", tmp_path / "o"], lock_wait=60, sha256=sha(data))
    assert all(o["ok"] for o in outcomes) and (tmp_path / "o").read_bytes() == data
    assert sum(o["fetched"] for o in outcomes) == len(data)  # the one that waited fetched nothing


def test_second_download_while_first_runs_says_so(tmp_path):
    import threading
    data = blob(100_000, seed=23)
    release = threading.Event()

    def slow(req):
        release.wait(60)
        return Reply(200, data)

    cache = tmp_path / "cache"
    with FaultServer({"/f": slow}) as srv:
        (tmp_path / "go").touch()
        child = start_child(tmp_path, "p", srv.url("/f"), tmp_path / "o", cache, 5, sha(data))
        try:
            wait_for(lambda: srv.hits("/f"))  # the child holds the lock and waits for the answer
            with pytest.raises(DownloadError) as err:
                download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=cache, lock_wait=0.2, **FAST)
        finally:
            release.set()
            out, stderr = child.communicate(timeout=120)
        assert f"another download of o is running (in process {child.pid})" in str(err.value)
        assert one_sentence(str(err.value))
        assert json.loads(out.strip().splitlines()[-1])["ok"] and "Traceback" not in stderr
        again = download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=cache, lock_wait=0.2, **FAST)
    assert again.bytes_fetched == 0 and (tmp_path / "o").read_bytes() == data
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="kills with SIGKILL")
def test_killed_download_leaves_no_lock_that_blocks(tmp_path):
    data = blob(2_000_000, seed=24)
    cache = tmp_path / "cache"
    part, _ = partial_paths([], sha(data), cache)
    with FaultServer({"/f": data}, throttle=200_000) as srv:
        (tmp_path / "go").touch()
        child = start_child(tmp_path, "p", srv.url("/f"), tmp_path / "o", cache, 5, sha(data))
        try:
            wait_for(lambda: part.exists() and part.stat().st_size >= 128 * 1024)
        finally:
            child.kill()
            child.communicate(timeout=60)
        srv.throttle = None  # the rest comes at full speed
        res = download([srv.url("/f")], tmp_path / "o", sha256=sha(data), cache_dir=cache, lock_wait=1.0,
                       **dict(FAST, timeout=10.0))
    assert (tmp_path / "o").read_bytes() == data and res.resumed  # what the killed run fetched was kept


# ---- 7. credentials -------------------------------------------------------------------------------------------------

def test_credentials_do_not_follow_a_redirect_to_another_server(tmp_path):
    data = blob(10_000, seed=25)
    with FaultServer({"/f": data}) as other:
        to_other = lambda req: Reply(302, b"", {"Location": other.url("/f")})  # noqa: E731
        with FaultServer({"/start": to_other}) as first:
            url = f"http://alice:s3cret@127.0.0.1:{first.port}/start"
            res = download([url], tmp_path / "o", sha256=sha(data), cache_dir=tmp_path / "c", **FAST)
            assert first.hits()[0].headers.get("authorization", "").startswith("Basic ")  # sent where written
    assert (tmp_path / "o").read_bytes() == data and res.sha256 == sha(data)
    for hit in other.hits():
        assert "authorization" not in hit.headers
        assert not any("s3cret" in v or "YWxpY2U6czNjcmV0" in v for v in hit.headers.values())


def test_error_sentences_never_show_the_password(tmp_path, bomb):
    answer = fixed_answer([OCTET, ("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))], bomb)
    with RawServer(answer) as srv, FaultServer({"/f": b"short"}) as short:
        for url, size in ((f"http://alice:s3cret@127.0.0.1:{srv.port}/f", None),
                          (f"http://alice:s3cret@127.0.0.1:{short.port}/f", 999)):
            with pytest.raises(DownloadError) as err:
                download([url], tmp_path / "o", size=size, cache_dir=tmp_path / "c", **FAST)
            text = str(err.value)
            assert "alice:****@127.0.0.1" in text and "s3cret" not in text and one_sentence(text)



def test_the_resume_record_on_disk_keeps_no_password_and_still_resumes(tmp_path):
    """The sidecar beside a part file is a file on disk: it names the URL masked, and the next run still
    finds the real URL behind it and continues with a Range request."""
    from httpfaults import Reset
    data = blob(600_000)
    with FaultServer({"/f": data}) as srv:
        srv.script("/f", Reset(after=200_000), Status(404))  # a drop, then the mirror is gone for this run
        url = f"http://alice:s3cret@127.0.0.1:{srv.port}/f"
        with pytest.raises(DownloadError):
            download([url], tmp_path / "o", cache_dir=tmp_path / "c", connections=1, **{**FAST, "retries": 1})
        sidecars = list((tmp_path / "c").glob("*.part.json"))
        assert sidecars and all("s3cret" not in p.read_text() and "alice:****@" in p.read_text() for p in sidecars)
        res = download([url], tmp_path / "o", cache_dir=tmp_path / "c", connections=1, **FAST)
        ranges = [h.range for h in srv.log]
    assert res.resumed and (tmp_path / "o").read_bytes() == data
    assert ranges[-1] and ranges[-1].startswith("bytes=") and not ranges[-1].startswith("bytes=0-")
