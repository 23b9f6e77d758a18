"""Several connections, each fetching its own byte range of the file into the preallocated part file.

The ranges (Segments) and how much of each is on disk live in the sidecar, so a resume continues every range
where it stopped. A range that fails `retries` times without progress moves on to the next URL; a server that
answers a range with the whole file (RangeIgnored) sends the download back to one connection.
"""
import threading
from dataclasses import dataclass
from typing import Optional

from fomm_doctor.net.failures import DownloadError, HtmlInsteadOfFile, RangeIgnored, Retryable, SplitHere, UrlDead
from fomm_doctor.net.job import MIN_SEGMENT, Job, blocks
from fomm_doctor.net.partfile import Segment
from fomm_doctor.net.redact import redact
from fomm_doctor.net.sniff import looks_like_html

SIDECAR_EVERY = 1024 * 1024  # bytes a range writes between saves of the sidecar


@dataclass
class _Tries:
    """Where one range's worker stands: which URL it asks, and how many times in a row it failed there."""
    url_index: int = 0
    failures: int = 0


def fetch_parallel(job: Job, meta: dict, split: Optional[SplitHere] = None) -> Optional[str]:
    """Parallel ranges; returns the URL used, or None when the server cannot do ranges (fall back)."""
    try:
        meta = _parallel_meta(job, meta, split)
        if meta is None:
            return None
        url = _lead_with(job, meta)
        todo = [s for s in meta["segments"] if s.left > 0]
        handed = {id(todo[0]): split.resp} if split is not None and todo and todo[0].start == split.have else {}
        errors = _run_segments(job, todo, meta, handed)
    finally:
        if split is not None:
            split.resp.close()  # unused when nothing was left to fetch or the workers never started
    return _after_segments(job, errors, url)


def _parallel_meta(job: Job, meta: dict, split: Optional[SplitHere]) -> Optional[dict]:
    """The segments to work on: from auto mode's first answer, from the sidecar (a resume), or after a one-byte
    probe (explicit connections); None when the server cannot do ranges."""
    if split is not None:
        return _new_segments(job, split.url, job.t.total, split.resp.headers.get("ETag"), split.have)
    if meta.get("segments") and meta.get("size") and job.part.size() == meta["size"]:
        job.t.total = meta["size"]
        if any(s.done for s in meta["segments"]):
            job.t.resumed = True
        return meta
    probed = _probe(job)
    if probed is None:
        return None
    url, total, etag = probed
    job.check_total(total, url)
    if total < 2 * MIN_SEGMENT:
        return None
    have = job.part.size() if meta.get("segments") is None else 0
    return _new_segments(job, url, total, etag, min(have, total))


def _probe(job: Job):
    """(url, total, etag) from a one-byte Range request on the first URL that answers 206; None if none does."""
    for url in job.urls:
        for failure in range(1, job.retries + 1):
            try:
                resp = job.get(url, start=0, end=0)
            except Retryable as exc:
                if failure < job.retries:
                    job.wait(failure, exc.wait)
                continue
            except UrlDead:
                break
            with resp:
                if resp.status_code != 206:
                    return None
                try:
                    total = job.total_from(resp, url)
                    job.check_total(total, url)
                except UrlDead:
                    break
                return (url, total, resp.headers.get("ETag")) if total is not None else None
    return None


def _new_segments(job: Job, url: str, total: int, etag: Optional[str], have: int) -> dict:
    """Split bytes have..total into ranges ([0, have) is already on disk), preallocate, record them."""
    n = job.segment_count(total - have)
    step = -(-(total - have) // n)
    segments = ([Segment(0, have, have)] if have else []) + [
        Segment(s, min(total, s + step)) for s in range(have, total, step)]
    job.part.preallocate(total)
    meta = {"url": redact(url), "etag": etag, "size": total, "segments": segments}
    job.part.save(meta)
    return meta


def _lead_with(job: Job, meta: dict) -> str:
    """The URL the segments came from, first in line: the sidecar keeps it masked (it is a file on disk), so
    find the real one it stands for."""
    url = next((u for u in job.urls if redact(u) == meta.get("url")), job.urls[0])
    job.t.set_done(sum(s.done for s in meta["segments"]))
    job.urls = [url] + [u for u in job.urls if u != url]
    return url


def _after_segments(job: Job, errors: list, url: str) -> Optional[str]:
    """The URL when every range arrived; None (start over with one connection) when the server ignored a range;
    else the first error, raised."""
    if not errors:
        return url
    if any(isinstance(e, RangeIgnored) for e in errors):
        job.part.discard()
        job.stop.clear()
        job.t.set_done(0)
        return None
    if any(isinstance(e, HtmlInsteadOfFile) for e in errors):
        job.part.discard()
    raise errors[0]


def _run_segments(job: Job, todo: list, meta: dict, handed: dict) -> list:
    """One thread per segment, at most `connections` at a time; returns the errors the threads raised."""
    errors = []

    def work(seg):
        try:
            _segment_worker(job, seg, meta, handed.get(id(seg)))
        except BaseException as exc:  # noqa: B036 - handed to the main thread
            errors.append(exc)
            job.stop.set()

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in todo]
    # more segments than connections only after a resume with a different N: run them in waves
    for i in range(0, len(threads), job.connections):
        wave = threads[i:i + job.connections]
        for t in wave:
            t.start()
        try:
            for t in wave:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            job.stop.set()
            for t in wave:
                t.join()
            job.part.save(meta)
            raise
        if errors:
            break
    return errors


def _segment_worker(job: Job, seg: Segment, meta: dict, resp=None):
    """Fetch the segment until done, writing at its offset. `resp`: an answer already open at this range's
    first byte (auto mode's first request), used before asking for more."""
    tries = _Tries()
    with open(job.part.path, "r+b") as f:
        while seg.left > 0:
            if job.stop.is_set():
                raise KeyboardInterrupt
            handed, resp = resp, None
            before = seg.done
            try:
                _fetch_range(job, f, seg, meta, job.urls[tries.url_index], handed)
            except Retryable as exc:
                _range_failed(job, tries, exc, progressed=seg.done > before)
            except UrlDead as exc:
                _next_url(job, tries, exc, retryable=False)
            finally:
                f.flush()
                job.part.save(meta)


def _fetch_range(job: Job, f, seg: Segment, meta: dict, url: str, handed):
    """One request for the rest of the segment (or the handed-over answer), streamed to its offset."""
    pos = seg.pos
    answer = handed if handed is not None else job.get(url, start=pos, end=seg.end - 1)
    with answer:
        _check_range_answer(job, answer, pos, url, handed is not None)
        if pos > seg.start:
            job.t.resumed = True
        _stream_range(job, f, answer, seg, meta, url)
    if seg.left > 0:
        raise Retryable("the connection closed before the end of its range")


def _range_failed(job: Job, tries: _Tries, exc: Retryable, progressed: bool):
    """Wait and retry the range; after `retries` failures without progress, the next URL."""
    tries.failures = 0 if progressed else tries.failures + 1
    if tries.failures >= job.retries:
        _next_url(job, tries, exc, retryable=True)
    elif tries.failures or exc.wait:  # a drop after progress reconnects at once
        job.wait(max(1, tries.failures), exc.wait)


def _next_url(job: Job, tries: _Tries, exc: Exception, retryable: bool):
    """Move the range on to the next URL; a DownloadError when none is left."""
    tries.url_index, tries.failures = tries.url_index + 1, 0
    if tries.url_index < len(job.urls):
        return
    if retryable:
        raise DownloadError(f"Could not download {job.dest.name}: {exc} on every source; run the same command "
                            f"again to continue where it stopped.", reason=f"{exc} on every source",
                            retryable=True)
    raise DownloadError(f"Could not download {job.dest.name}: {exc}.", reason=str(exc))


def _check_range_answer(job: Job, resp, pos: int, url: str, handed: bool):
    """A range must come back as 206 from `pos`; a handed-over first answer may be the whole file (200)."""
    ranged = resp.status_code == 206 and job.range_of(resp, url)[0] == pos
    if not ranged and not (handed and pos == 0 and resp.status_code == 200):
        raise RangeIgnored()
    job.check_total(job.total_from(resp, url), url)


def _stream_range(job: Job, f, resp, seg: Segment, meta: dict, url: str):
    """Write the answer at the segment's offset until the segment is full or the answer ends."""
    f.seek(seg.pos)
    unsaved = 0
    check_html = job.expect_binary and seg.pos == 0
    for block in blocks(resp):
        if check_html and looks_like_html(block):
            raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
        check_html = False
        block = block[:seg.left]
        f.write(block)
        seg.done += len(block)
        unsaved += len(block)
        job.t.advance(len(block))
        if unsaved >= SIDECAR_EVERY:
            f.flush()
            job.part.save(meta)
            unsaved = 0
        if job.stop.is_set():
            raise KeyboardInterrupt
        if seg.left <= 0:
            break  # an open-ended first answer runs on past this range: the next ones are fetched apart
