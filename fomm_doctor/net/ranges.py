"""Several connections, each fetching its own byte range of the file into the preallocated part file.

The ranges (Segments) and how much of each is on disk live in the sidecar, so a resume continues every range
where it stopped. A connection whose range is done takes over the second half of the largest range left, and in
auto mode connections are added while throughput grows with them (Growth), up to a cap. A range that fails `retries` times without progress moves on to the next URL; a server that
answers a range with the whole file (RangeIgnored) sends the download back to one connection.
"""
import threading
import time
from dataclasses import dataclass
from typing import Optional

from fomm_doctor.net.failures import DownloadError, HtmlInsteadOfFile, RangeIgnored, Retryable, SplitHere, UrlDead
from fomm_doctor.net.job import MAX_AUTO_CONNECTIONS, MIN_SEGMENT, Job, blocks
from fomm_doctor.net.partfile import Segment
from fomm_doctor.net.redact import redact
from fomm_doctor.net.sniff import looks_like_html

SIDECAR_EVERY = 1024 * 1024  # bytes a range writes between saves of the sidecar
SPLIT_MIN = 4 * MIN_SEGMENT  # a range with less left is finished by its own connection
POLL = 0.2  # seconds between looks at the connections
WINDOW = 1.5  # seconds of throughput measured per connection count (a few round trips, smoothing the start)
GAIN = 0.5  # added connections must bring at least this share of what they would on a per-connection throttle


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
    """A thread per segment, at most `Growth.target` at a time: a connection that finishes takes over half of the
    largest range left (the last bytes never wait on one slow connection), and in auto mode the target grows
    while throughput does. Returns the errors the threads raised."""
    errors, queue, most = [], list(todo), 0
    growth = Growth(job)

    def work(seg):
        try:
            _segment_worker(job, seg, meta, handed.get(id(seg)))
        except BaseException as exc:  # noqa: B036 - handed to the main thread
            errors.append(exc)
            job.stop.set()

    running = []
    try:
        while not errors:
            running = [t for t in running if t.is_alive()]
            while len(running) < growth.target:
                seg = queue.pop(0) if queue else split_largest(meta, [t.seg for t in running])
                if seg is None:
                    break
                t = threading.Thread(target=work, args=(seg,), daemon=True)
                t.seg = seg
                t.start()
                running.append(t)
            if not running:
                break
            most = max(most, len(running))
            running[0].join(POLL)
            growth.observe(len(running))
    except KeyboardInterrupt:
        job.stop.set()
        for t in running:
            t.join()
        job.part.save(meta)
        raise
    for t in running:
        t.join()
    job.t.connections = max(job.t.connections, most)
    return errors


def split_largest(meta: dict, busy: list) -> "Segment | None":
    """A new segment made of the second half of the busy segment with the most bytes left (its connection stops
    at the new end); None when no range is worth splitting. The cut is far ahead of where its connection writes,
    so no block in flight crosses it."""
    seg = max(busy, key=lambda s: s.left, default=None)
    if seg is None or seg.left < SPLIT_MIN:
        return None
    cut = seg.pos + seg.left // 2
    new = Segment(cut, seg.end)
    seg.end = cut
    meta["segments"].append(new)
    return new


class Growth:
    """How many connections one download uses. Fixed when asked for (`--connections N`); in auto mode it starts
    at AUTO_CONNECTIONS and measures: every WINDOW seconds, if the last connections added raised throughput by
    at least half of what they would on a link that throttles each connection, it adds half as many as it has;
    once they do not, it goes back to the count before them and stops measuring. Never above
    MAX_AUTO_CONNECTIONS (politeness to a mirror)."""

    def __init__(self, job: Job):
        self.job, self.target = job, job.connections
        self.settled = not job.auto
        self.added, self.last_rate = 0, None
        self._start_window()

    def _start_window(self):
        self.t0, self.b0 = time.monotonic(), self.job.t.bytes_fetched

    def observe(self, running: int) -> None:
        elapsed = time.monotonic() - self.t0
        if self.settled or elapsed < WINDOW:
            return
        rate = (self.job.t.bytes_fetched - self.b0) / elapsed
        if running < self.target:  # no range left worth another connection: nothing to learn
            self.settled = True
            return
        before = self.target - self.added
        if self.last_rate is not None and rate < self.last_rate * (1 + GAIN * self.added / before):
            self.target, self.settled = before, True  # the last ones did not help: give them back
            return
        if self.target >= MAX_AUTO_CONNECTIONS:
            self.settled = True
            return
        self.added = min(max(1, self.target // 2), MAX_AUTO_CONNECTIONS - self.target)
        self.target += self.added
        self.last_rate = rate
        self._start_window()


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
