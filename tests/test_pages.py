"""read_page against real 127.0.0.1 servers that trickle, never stop, pack bombs and redirect: it always
ends, within its cap and deadline, with the page or with one sentence."""
import gzip
import json
import socket
import threading
import tracemalloc

import pytest

from fomm_doctor.net.pages import PageError, read_page
from httpfaults import FaultServer, RawServer, Reply, endless_answer, fixed_answer, gzip_zeros, trickle_answer


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and "\n" not in text and "Traceback" not in text


@pytest.mark.parametrize("length", [True, False])
def test_trickling_body_is_cut_off_at_the_deadline(length):
    body = b"x" * 150  # 30 s at one byte every 0.2 s: a missed deadline still ends the test
    headers = [("Content-Length", str(len(body)))] if length else []
    with RawServer(trickle_answer(headers, body, every=0.2)) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/p"), deadline_s=1.0, timeout=5.0)
        assert srv.sent < len(body) + 200  # cut off before the end
    assert "was still sending after 1 s, so it was cut off" in str(err.value) and one_sentence(str(err.value))
    assert err.value.status == 200


def test_trickling_headers_are_cut_off_at_the_deadline():
    with RawServer(trickle_answer([("X-Slow", "y" * 150)], b"", every=0.2, head_too=True)) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/p"), deadline_s=1.0, timeout=5.0)
        assert srv.sent < 150
    assert "did not answer within 1 s, so it was cut off" in str(err.value) and one_sentence(str(err.value))


def test_endless_body_stops_at_max_bytes():
    with RawServer(endless_answer([("Content-Type", "text/html")])) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/p"), max_bytes=1_000_000)
        assert srv.sent < 256 * 1024 * 1024  # the client hung up long before the server's own end
    assert "more than the 1,000,000 bytes a page may have" in str(err.value) and one_sentence(str(err.value))


def test_declared_length_over_the_cap_is_refused_before_reading():
    with RawServer(fixed_answer([("Content-Length", str(10 ** 12))], b"x" * 100)) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/p"), max_bytes=1000)
    assert "1,000,000,000,000 bytes, more than the 1,000" in str(err.value) and one_sentence(str(err.value))


def test_gzip_bomb_stops_at_max_bytes_with_little_memory():
    bomb = gzip_zeros(100 * 1024 * 1024)
    answer = fixed_answer([("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))], bomb)
    with RawServer(answer) as srv:
        tracemalloc.start()
        try:
            with pytest.raises(PageError) as err:
                read_page(srv.url("/p"), max_bytes=1024 * 1024)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert "more than the 1,048,576 bytes" in str(err.value) and one_sentence(str(err.value))
    assert peak < 16 * 1024 * 1024  # unpacked in full it would be 100 MiB


def test_gzip_json_answer_is_unpacked():
    doc = {"files": [{"filename": f"torch-{i}.whl"} for i in range(2000)]}
    packed = gzip.compress(json.dumps(doc).encode())
    answer = fixed_answer([("Content-Encoding", "gzip"), ("Content-Type", "application/json"),
                           ("Content-Length", str(len(packed)))], packed)
    with RawServer(answer) as srv:
        page = read_page(srv.url("/p"))
        assert "gzip" in srv.requests[0].headers["accept-encoding"]
    assert page.status == 200 and page.json() == doc and page.text.startswith('{"files"')


def test_gzip_answer_cut_short_is_an_error_not_half_a_page():
    packed = gzip.compress(json.dumps({"k": "v" * 5000}).encode())
    with RawServer(fixed_answer([("Content-Encoding", "gzip")], packed[:len(packed) // 2])) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/p"))
    assert "ends too soon" in str(err.value) and one_sentence(str(err.value))


def test_empty_gzip_answer_is_an_empty_page():
    answer = fixed_answer([("Content-Encoding", "gzip"), ("Content-Length", "0")], status="404 Not Found")
    with RawServer(answer) as srv:
        page = read_page(srv.url("/p"))
    assert page.status == 404 and page.body == b""


def test_unreadable_content_length_does_not_crash():
    with RawServer(fixed_answer([("Content-Length", "\u00b2")], b"hello")) as srv:
        page = read_page(srv.url("/p"))
    assert page.body == b"hello"


def test_redirect_to_another_port_does_not_carry_authorization():
    with FaultServer({"/p": b"the page"}) as other:
        to_other = lambda req: Reply(302, b"", {"Location": other.url("/p")})  # noqa: E731
        with FaultServer({"/start": to_other}) as first:
            by_url = read_page(f"http://alice:s3cret@127.0.0.1:{first.port}/start")
            by_header = read_page(first.url("/start"), headers={"Authorization": "Bearer t0ken"})
            sent = [h.headers.get("authorization") for h in first.hits()]
        assert by_url.url == other.url("/p")
    assert by_url.body == by_header.body == b"the page"
    assert sent[0].startswith("Basic ") and sent[1] == "Bearer t0ken"  # given where they were written for
    assert len(other.hits()) == 2
    for hit in other.hits():
        assert "authorization" not in hit.headers and not any("t0ken" in v for v in hit.headers.values())


@pytest.mark.parametrize("url", ["http://[::1", "http://", "htp://x/y", ""])
def test_malformed_url_is_one_sentence(url):
    with pytest.raises(PageError) as err:
        read_page(url)
    assert "is not a URL that can be fetched" in str(err.value) and one_sentence(str(err.value))


def test_connection_refused_is_one_sentence_without_the_password():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    with pytest.raises(PageError) as err:
        read_page(f"http://alice:s3cret@127.0.0.1:{port}/p", timeout=5.0)
    text = str(err.value)
    assert "connection was refused" in text and "alice:****@" in text and "s3cret" not in text and one_sentence(text)


def test_silent_server_is_cut_off_at_the_deadline_not_the_socket_timeout():
    release = threading.Event()

    def silent(req):
        release.wait(30)
        return Reply(200, b"too late")

    with FaultServer({"/p": silent}) as srv:
        try:
            with pytest.raises(PageError) as err:
                read_page(srv.url("/p"), deadline_s=0.5, timeout=20.0)
        finally:
            release.set()
    assert "did not answer within 0.5 s" in str(err.value) and one_sentence(str(err.value))
