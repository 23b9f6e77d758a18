"""`fomm-doctor ui`: the web page on this machine (gradio; `pip install "fomm-doctor[ui]"`)."""
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.checks.common import pip_cmd
from fomm_doctor.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _require_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home from the user's machine
    import importlib
    try:
        importlib.import_module("gradio")
    except ImportError:
        command = pip_cmd(sys.platform, 'install "fomm-doctor[ui]"')
        raise UserError(f"the web page needs gradio, which is not installed; run `{command}` (Python 3.10 or "
                        "newer).") from None


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every network this "
                             "machine is on; anyone there can then use the page)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    share: bool = typer.Option(False, "--share", help="Also make a public link through gradio's share "
                               "servers (needs the internet; anyone with the link can use the page)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Folder for the videos made (default: "
                                           "the user cache folder's ui-results)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the browser."),
) -> None:
    """Start the web page: photo (upload or webcam), driving video, checkpoint (and fetch), mode, crop,
    paste-back, precision, the result with its audio and a download link; `check` on a tab of its own.
    Ctrl-C stops it."""
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {port}.")
    _require_gradio()   # torch is not needed to start: without it the check tab says how to get it
    from fomm_core.cache import user_cache_dir
    from fomm_doctor.ui.page import build_page
    folder = Path(results).expanduser() if results else user_cache_dir("ui-results")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the results folder {folder} ({err.strerror or err}).") from None
    if host not in LOCAL_HOSTS:
        typer.echo(f"note: listening on {host}: other machines that can reach it can use the page.", err=True)
    page = build_page(folder)
    typer.echo(f"results go to {folder}", err=True)
    try:
        page.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, share=share, inbrowser=open_browser, show_error=True,
            allowed_paths=[str(folder)], ssr_mode=False, footer_links=[])
    except OSError:   # gradio's "Cannot find empty port in range", or an address that is not this machine's
        raise UserError(f"cannot listen on {host}:{port}: the port is taken or the address is not this "
                        "machine's; choose another with --port (or --host).") from None
