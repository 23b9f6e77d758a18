"""`fomm-doctor ui`: the web page on this machine (gradio; `pip install "fomm-doctor[ui]"`)."""
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.errors import UserError
from fomm_doctor.ui.session import KEEP_RESULTS, KEEP_SESSIONS, KEEP_UPLOADS

AUTH_ENV = "FOMM_DOCTOR_UI_AUTH"
# gradio settings from the environment that would widen what the page serves or where it keeps files: the page
# decides these itself
_GRADIO_ENV = ("GRADIO_ALLOWED_PATHS", "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_ROOT_PATH")


def _require_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home from the user's machine
    import importlib
    try:
        importlib.import_module("gradio")
    except ImportError:
        from fomm_doctor.checks.common import pip_cmd  # the checks package loads requests: only when needed
        command = pip_cmd(sys.platform, 'install "fomm-doctor[ui]"')
        raise UserError(f"the web page needs gradio, which is not installed; run `{command}` (Python 3.10 or "
                        "newer).") from None


def _exposure(host: str, share: bool, auth: Optional[str]) -> Optional[tuple]:
    """(user, password) or None; refuses a page others can reach without --auth, warns loudly when it has one."""
    from fomm_doctor.ui.guard import is_loopback, parse_auth
    credentials = parse_auth(auth) if auth else None
    reach = ("a public link (--share)" if share else "") or ("" if is_loopback(host) else f"--host {host}")
    if reach and credentials is None:
        raise UserError(f"{reach} lets others use this page, which runs code and reads files on this machine; "
                        f"give it a password with --auth USER:PASS (or {AUTH_ENV}=USER:PASS), or leave it on "
                        "127.0.0.1.")
    if reach:
        plain = "" if share else " over plain HTTP: anyone on the network path can read the password"
        typer.echo(f"WARNING: {reach}: anyone who can reach this page and knows the password can animate on "
                   f"this machine{plain}.", err=True)
    return credentials


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every network this "
                             "machine is on; anyone there can then use the page, so --auth is required)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    share: bool = typer.Option(False, "--share", help="Also make a public link through gradio's share "
                               "servers (needs the internet and --auth; anyone with the link can try it)."),
    auth: Optional[str] = typer.Option(None, "--auth", envvar=AUTH_ENV, show_envvar=True, metavar="USER:PASS",
                                       help="Ask for this user name and password before showing the page "
                                       "(required with --share or a --host other than 127.0.0.1)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Folder for the videos made (default: the "
                                           "user cache folder's ui-results). Each start of the page makes a new "
                                           "private folder page-DATE-TIME-XXXXXXXX in it and serves only that "
                                           f"folder (this run's newest {KEEP_UPLOADS} uploads and "
                                           f"{KEEP_RESULTS} videos); the {KEEP_SESSIONS} newest such folders "
                                           "are kept; nothing else in DIR is served or touched."),
    max_upload_mb: int = typer.Option(100, "--max-upload-mb", min=1, help="Largest upload accepted, in MB "
                                      "(photo or driving video)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the browser."),
) -> None:
    """Start the web page: photo (upload or webcam), driving video (each checked as it is uploaded), a
    checkpoint (registered, fetched, or a file of yours added), mode, crop, paste-back, precision; what is being
    done shown beside the animate button, Stop, an example photo and clip; the result with its audio and a
    download link; `check` on a tab of its own. It answers only requests addressed to its own host names.
    Ctrl-C stops it."""
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {port}.")
    credentials = _exposure(host, share, auth)
    from fomm_core.cache import user_cache_dir
    from fomm_doctor.ui.session import open_session
    folder = open_session(Path(results).expanduser() if results else user_cache_dir("ui-results"))
    for name in _GRADIO_ENV:
        os.environ.pop(name, None)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)        # uploads land in the session folder, read before import
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")
    _require_gradio()   # torch is not needed to start: without it the check tab says how to get it
    typer.echo(f"results go to {folder}", err=True)
    _serve(folder, host, port, share, credentials, max_upload_mb * 1024 * 1024, open_browser)


def _serve(folder: Path, host: str, port: int, share: bool, credentials, max_upload: int, open_browser: bool):
    from starlette.middleware import Middleware
    from fomm_doctor.ui import guard, session
    from fomm_doctor.ui.page import CSS, build_page
    names, tunnels = guard.own_names(host), set()
    any_address = host in guard.WILDCARDS
    guard_app = Middleware(guard.HostGuard, max_upload=max_upload,
                           allowed=lambda value: guard.host_allowed(value, names, port, any_address, tunnels),
                           before_upload=lambda: session.prune_uploads(folder, session.KEEP_UPLOADS - 1))
    # a checkpoint by its path on this machine only for a page nobody else can reach: a path is how a visitor
    # would make the page read any file here
    page = build_page(folder, local_paths=guard.is_loopback(host) and not share)
    try:
        page.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, share=share, inbrowser=open_browser, show_error=True,
            allowed_paths=[], blocked_paths=[], ssr_mode=False, footer_links=[], auth=credentials,
            max_file_size=max_upload, css=CSS, app_kwargs={"middleware": [guard_app]}, prevent_thread_lock=True,
            quiet=True)
    except OSError:   # gradio's "Cannot find empty port in range", or an address that is not this machine's
        raise UserError(f"cannot listen on {host}:{port}: the port is taken or the address is not this "
                        "machine's; choose another with --port (or --host).") from None
    typer.echo(f"the page is at {page.local_url}", err=True)
    if page.share_url:
        from urllib.parse import urlsplit
        parsed = guard.parse_host(urlsplit(page.share_url).netloc)
        tunnels.update([parsed[0]] if parsed else [])
        typer.echo(f"and at the public link {page.share_url}", err=True)
    page.block_thread()
