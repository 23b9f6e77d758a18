"""Downloads that survive a bad network: resume with HTTP Range, retry, fail over between mirrors, verify sha256.

    result = download([mirror_url, upstream_url], Path("torch.whl"), cache_dir=cache, sha256="...", size=...)

`connections=None` (the default) is auto: a file of AUTO_MIN_SIZE or more from a server that answers Range
requests with 206 comes over AUTO_CONNECTIONS parallel byte ranges at first, and more while throughput grows
with them (measured, up to MAX_AUTO_CONNECTIONS; ranges.Growth), so a link that throttles each connection is
that many times faster; small files, and servers that ignore Range, use one connection. The first request
decides (with a known large size it asks `bytes=0-`; with no size, a plain answer's Accept-Ranges invites the
split and the other ranges must come back 206), so auto mode costs no extra round trip and its first answer
becomes the first range. An integer forces that many connections (1 = one connection).

The partial file lives in the caller's `cache_dir`, so a second run after Ctrl-C or a crash continues where
the first stopped. The finished file is verified, then moved into place with a rename: `dest` either does not
exist or is complete and correct. Two runs of the same download take turns: the lock file beside the part file
is an OS lock the OS drops when its process dies (a killed run never blocks the next), so a second run waits up
to `lock_wait` seconds, then says that another download is running. Servers are not trusted: a body never grows
past the size the file should have (or the cap of what is fetched), a compressed answer or a web page is
never written, and a URL or redirect to anything but http(s) (file://) fails at once, unretried. Every error is a
`DownloadError` with one sentence, credentials in URLs masked.

No terminal output here: `progress(bytes_done, total)` is called as bytes arrive; the CLI draws the bar.
"""
from dataclasses import dataclass
from pathlib import Path

from fomm_doctor.errors import ExitCode
from fomm_doctor.net.digests import file_sha256
from fomm_doctor.net.failures import ChecksumMismatch, DownloadError, SplitHere, short_reason
from fomm_doctor.net.job import LOCK_WAIT, MAX_SIZE, Job
from fomm_doctor.net.ranges import fetch_parallel
from fomm_doctor.net.redact import redact
from fomm_doctor.net.single import fetch_single
from fomm_doctor.oslock import locked


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    bytes_fetched: int  # bytes that came over the network in this run
    resumed: bool  # some request continued a partial file with a Range request
    url_used: str
    attempts: int  # HTTP requests made
    connections: int = 1  # the most connections used at once (auto mode: found by measuring throughput)


def download(urls, dest, *, cache_dir, sha256=None, size=None, retries=8, timeout=15.0, connections=None,
             progress=None, expect_binary=False, session=None, max_size=MAX_SIZE, lock_wait=LOCK_WAIT,
             **tuning) -> DownloadResult:
    """Fetch `dest` from the first of `urls` that works, keeping the partial file in `cache_dir`; returns a
    DownloadResult or raises a DownloadError. `connections`: None = auto (parallel ranges for large files
    when the server does ranges), N = exactly N. `max_size`: the most bytes a file of unknown size may have,
    the cap of what is fetched (job.CHECKPOINT_CAP, job.WHEEL_CAP; unsaid: the biggest); past it the partial
    file is removed.
    `lock_wait`: seconds to wait for another run of the same download. `tuning`: backoff, max_wait."""
    job = Job(urls, dest, cache_dir=cache_dir, sha256=sha256, size=size, retries=retries, timeout=timeout,
              connections=connections, progress=progress, expect_binary=expect_binary, session=session,
              max_size=max_size, lock_wait=lock_wait, **tuning)
    try:
        if _already_there(job):
            return DownloadResult(job.dest, job.sha256, 0, False, job.urls[0], 0)
        _make_cache_dir(job.cache_dir)
        busy = (lambda holder: DownloadError(f"another download of {job.dest.name} is running ({holder}); "
                                             f"let it finish, then run this again.", ExitCode.USAGE,
                                             retryable=True))
        with locked(job.part.lock_file, job.lock_wait, busy):
            if _already_there(job):  # placed by the run this one waited for
                return DownloadResult(job.dest, job.sha256, 0, False, job.urls[0], 0)
            return _fetch_and_verify(job)
    except OSError as exc:  # disk full, permissions, a folder in the way: a sentence, not a traceback
        where = exc.filename or job.cache_dir
        raise DownloadError(redact(f"Could not download {job.dest.name}: {where} could not be written "
                                   f"({exc.strerror or short_reason(exc)})."), ExitCode.USAGE) from None


def _already_there(job: Job) -> bool:
    return bool(job.sha256) and job.dest.is_file() and file_sha256(job.dest) == job.sha256


def _make_cache_dir(cache_dir: Path):
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (cache_dir, *cache_dir.parents) if p.is_file()), None)
        if blocker is None:
            raise DownloadError(f"the download cache {cache_dir} could not be created ({exc.strerror or exc}).",
                                ExitCode.USAGE) from None
        raise DownloadError(f"{blocker} is a file, not a folder, so the download cache cannot be kept in "
                            f"{cache_dir}.", ExitCode.USAGE) from None


def _fetch_and_verify(job: Job) -> DownloadResult:
    """Fetch, check the sha256, and refetch once from scratch (from the next mirror when there is one) when
    it does not match; the verified file is placed at `dest`."""
    mismatches = 0
    while True:
        url = _fetch_once(job)
        digest = file_sha256(job.part.path)
        if job.sha256 is None or digest == job.sha256:
            break
        job.part.discard()
        mismatches += 1
        if mismatches >= 2:
            raise ChecksumMismatch(
                f"{job.dest.name} from {redact(url)} does not match its published sha256 (got {digest[:16]}..., "
                f"expected {job.sha256[:16]}...) even after downloading it again, so it was not used.")
        if len(job.urls) > 1:
            job.urls = [u for u in job.urls if u != url] + [url]
        job.t.set_done(0)
    job.part.place(job.dest)
    return DownloadResult(job.dest, digest, job.t.bytes_fetched, job.t.resumed, url, job.t.attempts,
                          job.t.connections)


def _fetch_once(job: Job) -> str:
    """The whole file into the part file, continuing what an earlier run left; returns the URL that served it."""
    meta = job.part.load()
    _resume_counts(job, meta)
    if (job.connections > 1 and not job.auto) or meta.get("segments"):
        used = fetch_parallel(job, meta)
        if used:
            return used
        meta = {}
        if job.part.exists() and job.part.load().get("segments"):
            job.part.discard()
    if job.part.exists() and not job.part.sidecar.exists():
        job.part.discard()  # a part file nobody can vouch for
    try:
        return fetch_single(job, meta)
    except SplitHere as split:  # auto mode: the first answer shows the file should come in parallel ranges
        used = fetch_parallel(job, meta, split)
        if used:
            return used
        job.auto = False  # a range came back whole: this server does not do ranges after all
        return fetch_single(job, {})


def _resume_counts(job: Job, meta: dict):
    """Size and bytes done from the sidecar and part file of an earlier run; fail early on a full disk."""
    if meta.get("size") and job.t.total is None:
        job.t.total = meta["size"]
    job.t.set_done(job.part.size() if not meta.get("segments") else 0)
    if job.t.total is not None:
        job.check_space(job.t.total)
