"""Downloads stay within what is fetched: a file of unknown size stops at the cap of its kind (a wheel's, a
checkpoint's) and leaves no partial file behind; a URL or redirect to anything but http(s) fails at once, is
never retried and never read. Real servers on 127.0.0.1 (httpfaults)."""
import io
from pathlib import Path

import pytest
import requests
import urllib3
from hypothesis import given, settings, strategies as st
from requests.utils import requote_uri
from urllib.parse import urljoin, urlparse

from fomm_doctor.net.download import download
from fomm_doctor.net.failures import DownloadError
from fomm_doctor.net.job import MAX_SIZE, WHEEL_CAP
from fomm_doctor.net.pages import PageError, read_page
from fomm_doctor.net.schemes import RefusedRedirect, refuse_other_schemes
from httpfaults import FaultServer, RawServer, Reply, fixed_answer, raw_head
from test_download import FAST, blob, sha

OCTET = ("Content-Type", "application/octet-stream")
NEVER = "is not an http(s) URL and is never followed"


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and "\n" not in text and "Traceback" not in text


def endless_chunked(srv, conn, request, limit=256 * 1024 * 1024):
    """A chunked answer that never ends (no Content-Length, chunk after chunk) until the client hangs up."""
    if not srv.send(conn, raw_head([OCTET, ("Transfer-Encoding", "chunked")])):
        return
    block = b"\0" * 65536
    piece = b"%x\r\n" % len(block) + block + b"\r\n"
    sent = 0
    while sent < limit and srv.send(conn, piece):
        sent += len(block)


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ---- 1. a cap that fits what is fetched --------------------------------------------------------------------

def test_endless_chunked_body_stops_at_the_cap_and_leaves_no_part(tmp_path):
    cache = tmp_path / "c"
    with RawServer(endless_chunked) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", max_size=1_000_000, cache_dir=cache, **FAST)
        sent, asked = srv.sent, len(srv.requests)
    text = str(err.value)
    assert "sent more than the 1,000,000 bytes" in text and one_sentence(text)
    assert "run the same command again" not in text  # past the cap is not a failure that passes
    assert asked == 1 and sent < 64 * 1024 * 1024  # the client hung up at the cap
    assert not (tmp_path / "o").exists() and leftovers(cache) == []  # the partial past the cap is garbage


def test_unknown_size_gets_the_biggest_wheels_cap_by_default_not_64_gib(tmp_path):
    """A caller that says nothing gets the wheel cap: a file announced bigger than any wheel is refused on the
    first answer, before a byte is written (the old default let 64 GiB through)."""
    assert MAX_SIZE == WHEEL_CAP and 3 * 1024 ** 3 < WHEEL_CAP < 8 * 1024 ** 3  # CUDA torch wheels: ~2.5 GB
    announced = WHEEL_CAP + 1
    with RawServer(fixed_answer([OCTET, ("Content-Length", str(announced))], b"\0" * 1000)) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/torch.whl")], tmp_path / "torch.whl", cache_dir=tmp_path / "c", **FAST)
        asked = len(srv.requests)
    text = str(err.value)
    assert f"announces {announced:,} bytes, more than the {WHEEL_CAP:,}" in text and one_sentence(text)
    assert asked == 1 and leftovers(tmp_path / "c") == []


# ---- 2. only http(s): a redirect to file:// fails at once --------------------------------------------------

class FileAdapter(requests.adapters.BaseAdapter):
    """A session that could read local files (as requests-file adds): a download must still never ask it."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def send(self, request, **kwargs):
        self.asked.append(request.url)
        resp = requests.Response()
        resp.status_code, resp.url, resp.request = 200, request.url, request
        body = Path(urlparse(request.url).path).read_bytes()
        resp.raw = urllib3.response.HTTPResponse(body=io.BytesIO(body), preload_content=False, status=200)
        return resp

    def close(self):
        pass


def test_redirect_to_a_file_url_fails_at_once_and_reads_nothing(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret-contents")
    session = requests.Session()
    reader = FileAdapter()
    session.mount("file://", reader)
    to_file = lambda req: Reply(302, b"", {"Location": secret.as_uri()})  # noqa: E731
    with FaultServer({"/f": to_file}) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", session=session,
                     **dict(FAST, retries=8))
        hits = srv.hits()
    text = str(err.value)
    assert len(hits) == 1 and reader.asked == []  # one request, no retry; the file was never asked for
    assert NEVER in text and secret.as_uri() in text and one_sentence(text)
    assert "the-secret-contents" not in text and "run the same command again" not in text
    assert not (tmp_path / "o").exists() and not list((tmp_path / "c").glob("*.part*"))


def test_a_second_redirect_to_a_file_url_is_caught_too_and_the_next_mirror_serves(tmp_path):
    data = blob(20_000, seed=3)
    routes = {"/a": lambda req: Reply(301, b"", {"Location": "/b"}),
              "/b": lambda req: Reply(307, b"", {"Location": "FILE:///etc/passwd"}), "/good": data}
    with FaultServer(routes) as srv:
        res = download([srv.url("/a"), srv.url("/good")], tmp_path / "o", sha256=sha(data),
                       cache_dir=tmp_path / "c", **dict(FAST, retries=8))
        paths = [h.path for h in srv.hits()]
    assert paths == ["/a", "/b", "/good"] and (tmp_path / "o").read_bytes() == data
    assert res.url_used.endswith("/good")


def test_a_mirror_that_is_not_http_is_skipped_without_retrying(tmp_path):
    with pytest.raises(DownloadError) as err:
        download(["file:///etc/passwd"], tmp_path / "o", cache_dir=tmp_path / "c", **dict(FAST, retries=8))
    text = str(err.value)
    assert "'file:///etc/passwd' is not an http(s) URL" in text and "0 requests" in text and one_sentence(text)


def test_a_location_that_is_not_utf8_is_one_sentence_not_a_crash(tmp_path):
    """requests reads a Location's bytes as UTF-8 and raised UnicodeDecodeError out of the download."""
    with RawServer(fixed_answer([("Location", "/\x80\xff")], status="302 Found")) as srv:
        with pytest.raises(DownloadError) as err:
            download([srv.url("/f")], tmp_path / "o", cache_dir=tmp_path / "c", **dict(FAST, retries=8))
        asked = len(srv.requests)
    text = str(err.value)
    assert "redirects to a Location that is not a readable URL" in text and one_sentence(text) and asked == 1


def test_a_page_that_redirects_to_a_file_url_is_one_sentence_and_never_followed(tmp_path):
    with FaultServer({"/simple/": lambda req: Reply(302, b"", {"Location": "file:///etc/passwd"})}) as srv:
        with pytest.raises(PageError) as err:
            read_page(srv.url("/simple/"))
        hits = srv.hits()
    assert len(hits) == 1 and NEVER in str(err.value) and one_sentence(str(err.value))


LATIN1 = st.text(alphabet=st.characters(max_codepoint=255, blacklist_categories=("Cs",)), max_size=40)
SCHEMES = st.sampled_from(["", "file:", "FILE:", " file:", "\tfile:", "ftp:", "data:", "http:", "https:", "//",
                           "HtTpS:", "javascript:", "file:/", "http:/", "\x00file:", "git+https:"])


@settings(max_examples=300, deadline=None)
@given(prefix=SCHEMES, rest=LATIN1)
def test_no_redirect_the_check_lets_through_leads_requests_off_http(prefix, rest):
    """Whatever a Location says: the check refuses it, or requests, following it its own way, stays on
    http(s)."""
    resp = requests.Response()
    resp.status_code, resp.url = 302, "http://127.0.0.1:8/a/b"
    resp.raw = urllib3.response.HTTPResponse(body=io.BytesIO(b""), preload_content=False)
    resp.headers["Location"] = prefix + rest
    try:
        refuse_other_schemes(resp)
    except RefusedRedirect as exc:
        assert str(exc).startswith("http://127.0.0.1:8/a/b redirects to ")
        return
    url = requests.Session().get_redirect_target(resp)  # as requests' resolve_redirects reads and joins it
    if url.startswith("//"):
        url = "http:" + url
    try:
        if not urlparse(url).netloc:
            url = urljoin(resp.url, requote_uri(url))
    except (ValueError, requests.exceptions.InvalidURL):
        return  # requests cannot follow it at all
    assert urlparse(url).scheme in ("http", "https")

