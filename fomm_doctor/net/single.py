"""One connection streaming to the end of the part file, resuming with Range where the part file stops.

In auto mode the first answer decides whether the file should come in parallel ranges instead (a large file
from a server that does ranges): then SplitHere hands that answer, still open, to the parallel code.
"""
from fomm_doctor.net.failures import DownloadError, HtmlInsteadOfFile, Retryable, SplitHere, UrlDead
from fomm_doctor.net.headers import parse_length
from fomm_doctor.net.job import Job, blocks
from fomm_doctor.net.redact import redact
from fomm_doctor.net.sniff import looks_like_html


def fetch_single(job: Job, meta: dict) -> str:
    """Loop over URLs and attempts until the part file is complete; returns the URL that finished it."""
    last, retryable = "no attempt was made", False
    for url in job.urls:
        failures = 0
        high = job.part.size()
        while failures < job.retries:
            try:
                if _attempt(job, url, meta):
                    return url
            except UrlDead as exc:
                last = str(exc)
                break
            except Retryable as exc:
                last, retryable = str(exc), True
                now = job.part.size()
                if now > high:  # progress: a drop after new bytes does not count against this mirror;
                    high, failures = now, 0  # reconnect at once (unless the server asked for a pause)
                    if exc.wait:
                        job.wait(1, exc.wait)
                    meta = job.part.load()
                    continue
                failures += 1
                if failures < job.retries:
                    job.wait(failures, exc.wait)
            meta = job.part.load()
    raise _gave_up(job, redact(last), retryable)


def _gave_up(job: Job, reason: str, retryable: bool) -> DownloadError:
    """The final sentence; it says to run again only when a failure was of the kind that passes."""
    advice = "; run the same command again to continue where it stopped" if retryable else ""
    sources, asked = len(job.urls), job.t.attempts
    return DownloadError(f"Could not download {job.dest.name}: {reason} (tried {sources} "
                         f"source{'s' if sources != 1 else ''}, {asked} request{'s' if asked != 1 else ''}){advice}.",
                         reason=reason, retryable=retryable)


def _attempt(job: Job, url: str, meta: dict) -> bool:
    """Fetch from where the part file ends. True when the file is complete. Raises Retryable/UrlDead, or
    SplitHere (auto mode) with the open answer when the file should come in parallel ranges."""
    have = job.part.size()
    if job.t.total is not None and have > job.t.total:
        job.part.discard()
        have = 0
    if have and job.t.total is not None and have == job.t.total:
        return True
    if_range = meta.get("etag") if meta.get("url") == redact(url) else None
    asked_range = bool(have) or job.large()  # a known large size: ask `bytes=0-` to learn about ranges
    resp = job.get(url, start=have, if_range=if_range, ranged=asked_range)
    if resp.status_code == 416:
        return _resume_refused(job, resp, have)
    if _answer_splits(job, url, resp, have, asked_range):
        raise SplitHere(url, resp, have)
    return _stream(job, url, resp, have)


def _resume_refused(job: Job, resp, have: int) -> bool:
    """A 416: nothing left past `have` (complete, True) or the partial is bogus: start over next time."""
    with resp:
        if have and job.t.total in (None, have):
            return True
        job.part.discard()
        raise Retryable("the server refused the resume range")


def _answer_splits(job: Job, url: str, resp, have: int, asked_range: bool) -> bool:
    """Check the first answer's size and range (closing it when they are wrong); True when auto mode should
    take it as the first of parallel ranges."""
    try:
        job.check_total(job.total_from(resp, url), url)
        if resp.status_code == 206 and job.range_of(resp, url)[0] != have:
            job.part.discard()
            raise Retryable("the server answered a different range than asked")
        return _splittable(job, resp, have, asked_range)
    except BaseException:
        resp.close()
        raise


def _splittable(job: Job, resp, have: int, asked_range: bool) -> bool:
    """Auto mode: split a large file when the server does ranges. A 206 proves it; for a first request
    made without Range (size unknown) `Accept-Ranges: bytes` is enough to try, the other ranges confirm it.
    A 200 answer to a Range request, or `Accept-Ranges: none`, means one connection."""
    if not job.large() or job.segment_count(job.t.total - have) < 2:
        return False
    accept = resp.headers.get("Accept-Ranges", "").lower()
    if "none" in accept:
        return False
    if resp.status_code == 206:
        return True
    return not asked_range and have == 0 and "bytes" in accept


def _stream(job: Job, url: str, resp, have: int) -> bool:
    """Write the answer to the part file: appended after `have` for a 206, from byte 0 for a 200."""
    with resp:
        if resp.status_code == 206:
            if have:
                job.t.resumed = True
            mode = "ab"
        else:  # 200: the whole file, from the first byte (the server ignores Range, or nothing to resume)
            if have:
                job.t.add_done(-have)
                have = 0
            mode = "wb"
        job.part.save({"url": redact(url), "etag": resp.headers.get("ETag"), "size": job.t.total,
                       "last_modified": resp.headers.get("Last-Modified")})
        try:
            _write_body(job, url, resp, have, mode)
        except (HtmlInsteadOfFile, UrlDead):
            job.part.discard()
            raise
    if job.t.total is not None and job.part.size() < job.t.total:
        raise Retryable("the connection closed before the end of the file")
    return True


def _end_of(job: Job, resp, url: str) -> int:
    """Where this answer must stop: the end of its range, the file's size, or `max_size` when nobody knows."""
    end = job.range_of(resp, url)[1] + 1 if resp.status_code == 206 else job.max_size
    return end if job.t.total is None else min(end, job.t.total)


def _too_long(job: Job, url: str, limit: int, resp) -> UrlDead:
    if resp.status_code == 206 or parse_length(resp.headers.get("Content-Length")) is not None:
        return UrlDead(f"{redact(url)} sends more than the {limit:,} bytes it announced")
    if job.t.total is not None:
        return UrlDead(f"{redact(url)} sends more than the {limit:,} bytes the file has")
    return UrlDead(f"{redact(url)} sent more than the {limit:,} bytes a download may have without saying "
                   f"how long the file is")


def _write_body(job: Job, url: str, resp, have: int, mode: str):
    """Append the answer to the part file (from byte `have`), never past where it must stop."""
    limit = _end_of(job, resp, url)
    room = limit - have
    first = not have
    with open(job.part.path, mode) as f:
        for block in blocks(resp):
            if first and job.expect_binary and looks_like_html(block):
                raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
            first = False
            if len(block) > room:
                raise _too_long(job, url, limit, resp)
            f.write(block)
            room -= len(block)
            job.t.advance(len(block))
            if job.stop.is_set():
                raise KeyboardInterrupt
