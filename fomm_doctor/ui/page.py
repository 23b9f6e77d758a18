"""The web page (gradio): inputs and buttons wired to fomm_doctor.ui.actions, nothing more.

Uploads reach the handlers as files (`preprocess=False`): gradio never decodes them, so a photo or video the CLI
would refuse gets the CLI's own sentence, from the same checks, as soon as it is uploaded. An animation runs on
a thread of its own (actions.Run); its handler reports what is being done (and for how long) beside the animate
button until the video is there, and Stop ends it between two batches with nothing written.

Every problem the actions raise (the CLI's own sentences) is shown on the page as that sentence; a bug shows
its type and message and is printed in full to the server's stderr.
"""
import html
import traceback
from pathlib import Path
from typing import Optional

from fomm_doctor import animation
from fomm_doctor.ui import actions, session

TITLE = "fomm-doctor"
INTRO = ("Animate a photo by the motion of a driving video with the First Order Motion Model, TPSMM or "
         "LivePortrait. Everything runs on this machine; nothing is uploaded anywhere else.")
EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_FILES = ("portrait.jpg", "sway.mp4")     # a public-domain portrait; a face clip made by code (README)
POLL_SECONDS = 0.25                              # how often a running animation's status is refreshed
# the finished video into view (a stopped run has none: the page stays where it is)
TO_RESULT = ("() => { const r = document.getElementById('result');"
             " if (r && r.querySelector('video')) r.scrollIntoView({block: 'end', behavior: 'smooth'}); }")

# The page's own look, given to launch(): status beside the animate button, the check list in the page's width
CSS = """
#status .fd-status { padding: 6px 10px; border-radius: 6px; line-height: 1.4; }
#status .fd-running { background: var(--color-accent-soft); }
#status .fd-problem { background: var(--error-background-fill); color: var(--error-text-color);
                      border: 1px solid var(--error-border-color); }
#status .fd-done { background: var(--background-fill-secondary); }
#status progress { width: 100%; height: 8px; margin-top: 4px; }
#status p { margin: 2px 0; }
#status ul { margin: 2px 0 0 1.2em; }
#checks table { width: 100%; table-layout: fixed; border-collapse: collapse; }
#checks td { vertical-align: top; padding: 6px 8px; border-top: 1px solid var(--border-color-primary);
             overflow-wrap: anywhere; white-space: normal; }
#checks col.fd-id { width: 14em; }
#checks col.fd-state { width: 6em; }
#checks td.fd-id { font-family: var(--font-mono); }
#checks .fd-fail, #checks .fd-warn { font-weight: 600; }
#checks .fd-fail { color: var(--error-text-color); }
#checks .fd-warn { color: var(--color-accent); }
#checks .fd-fix { margin-top: 4px; }
"""


def _sentence(err: BaseException, uploads=()) -> str:
    """What the page says about `err`: its sentence, or for a bug its type and message (printed in full to the
    terminal). An upload is named as the user knows it (its file name), not by the server's copy of it."""
    from fomm_core.errors import FommError
    from fomm_doctor.errors import UserError
    from fomm_doctor.net.redact import redact
    if isinstance(err, (UserError, FommError, actions.Stopped)):
        text = str(err)
    else:
        traceback.print_exception(type(err), err, err.__traceback__)
        text = f"unexpected {type(err).__name__}: {err} (details are in the terminal that runs the page)"
    for path in uploads:
        if path:
            text = text.replace(str(path), Path(path).name)
    return redact(text)


def _refusal(text: str):
    """The gradio error an API caller gets for a refused run; the page itself shows the sentence in #status."""
    import gradio as gr
    return gr.Error(text, duration=None, visible=False, print_exception=False)


def _status(kind: str, lines, fraction: Optional[float] = None, bar: bool = False) -> str:
    """#status's HTML: `lines` (plain text, escaped here; a list of notes becomes a list) in a box whose look says
    `kind` (running, problem, done); with `bar`, a progress bar (without a fraction: one that only moves)."""
    parts = []
    for line in lines:
        if isinstance(line, (list, tuple)):
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in line) + "</ul>" if line else "")
        elif line:
            parts.append(f"<p>{html.escape(line)}</p>")
    if bar:
        parts.append("<progress max='1'></progress>" if fraction is None else
                     f"<progress max='1' value='{min(max(fraction, 0.0), 1.0):.3f}'></progress>")
    return f"<div class='fd-status fd-{kind}' role='status'>{''.join(parts)}</div>"


def _running(run: actions.Run) -> str:
    fraction, text, seconds = run.now()
    if run.stopping:
        text = "stopping (after the step under way)"
    return _status("running", [f"{text} ({seconds:.0f} s)"], fraction, bar=True)


def _examples() -> list:
    """The bundled example photo and clip, when this install has them."""
    files = [EXAMPLES / f for f in EXAMPLE_FILES]
    return files if all(f.is_file() for f in files) else []


def _upload(folder: Path, payload) -> Optional[str]:
    """The path of an upload handed over as gradio's file data (a dict, or a path) when it is this page's own
    upload (session.upload_path) or a bundled example; None when there is none."""
    if not payload:
        return None
    given = payload.get("path") if isinstance(payload, dict) else payload
    if not given:
        return None
    if Path(given) in _examples():
        return str(given)
    return str(session.upload_path(folder, given))


def _upload_check(folder: Path, check):
    """A handler run at upload time: the upload checked by `check` (the CLI's); -> (the component's value: kept,
    or cleared when refused; #status: the sentence, or emptied when it showed a problem, else kept)."""
    import gradio as gr

    def checked(payload, shown):
        path = None
        try:
            path = _upload(folder, payload)
            if path:
                check(Path(path))
        except Exception as err:
            return None, _status("problem", [_sentence(err, (path,))])
        return gr.update(), "" if "fd-problem" in (shown or "") else gr.update()
    return checked


def _waiting(animations: actions.Animations):
    def waiting():
        text = "waiting for the animation under way to finish" if animations.busy() else "starting"
        return _status("running", [text], bar=True)
    return waiting


def _animate_handler(animations: actions.Animations, runs: actions.Runs, folder: Path):
    import gradio as gr   # (the module has no `from __future__ import annotations`: gradio reads gr.Request below)

    def animate(source, driving, checkpoint, mode, best, crop, paste, precision, request: gr.Request):
        uploads = ()
        try:
            uploads = (_upload(folder, source), _upload(folder, driving))
        except Exception as err:
            text = _sentence(err)
            yield None, None, _status("problem", [text]), ""
            raise _refusal(text) from None
        owner = request.session_hash if request is not None else ""
        run = runs.start(owner, animations, actions.AnimateRequest(*uploads, checkpoint, mode, best, crop,
                                                                   paste, precision))
        try:
            yield None, None, _running(run), ""
            while not run.wait(POLL_SECONDS):
                yield gr.update(), gr.update(), _running(run), gr.update()
        finally:
            # also when gradio closes this generator early (the page was closed): nobody follows the run any
            # more, so it stops at its next batch (a finished run is not affected)
            runs.forget(owner, run)
            run.stop()
        if run.error is not None:
            text = _sentence(run.error, uploads)
            yield None, None, _status("done" if isinstance(run.error, actions.Stopped) else "problem", [text]), ""
            if not isinstance(run.error, actions.Stopped):
                raise _refusal(text) from None
            return
        done = run.result
        text = done.sentence.replace(str(done.path), done.path.name)
        details = "\n".join(_fact(line) for line in done.details)
        yield str(done.path), str(done.path), _status("done", [text, done.model, done.notes]), details
    return animate


def _fact(text: str) -> str:
    """A technical fact (a path, the inference path's words) as a Markdown list item that shows it as it is."""
    return "- `" + text.replace("`", "'") + "`"


def _stop_handler(runs: actions.Runs):
    import gradio as gr

    def stop(request: gr.Request):
        runs.stop(request.session_hash if request is not None else "")
    return stop


def _fetch_handler():
    import gradio as gr

    def fetch(name, progress=gr.Progress()):
        try:
            sentence = actions.fetch_checkpoint(name, lambda fraction, text: progress(fraction, desc=text))
        except Exception as err:
            text = _sentence(err)
            return gr.update(), gr.update(), _status("problem", [text])
        fetched = name if name in actions.checkpoint_choices() else actions.AUTO_CHECKPOINT
        return (gr.update(choices=actions.checkpoint_choices(), value=fetched),
                gr.update(choices=actions.fetchable(), value=None), _status("done", [sentence]))
    return fetch


def _add_handler(folder: Path, local_paths: bool):
    import gradio as gr
    from fomm_doctor.errors import UserError

    def add(files, path, name):
        given = [f for f in (files or []) if f] + ([path.strip()] if path and path.strip() else [])
        try:
            if path and path.strip() and not local_paths:   # the box is hidden, but a request can still name one
                raise UserError("this page takes a checkpoint by its path only when it is reachable from this "
                                "machine alone; upload the file instead.")
            added, sentence = actions.add_checkpoint(given, name, folder)
        except Exception as err:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), _status(
                "problem", [_sentence(err, files or ())])
        return (gr.update(choices=actions.checkpoint_choices(), value=added), None, "", "", gr.update(open=False),
                _status("done", [sentence]))
    return add


def _checks():
    def check(network):
        try:
            return _check_table(actions.check_rows(network))
        except Exception as err:
            return _status("problem", [_sentence(err)])
    return check


def _check_table(rows: list) -> str:
    """The checks as one table in the page's width: check, status, then what was found with its fix under it
    (every row shown; long words and commands wrap)."""
    body = []
    for check, state, found, fix in rows:
        fix_html = f"<div class='fd-fix'><b>fix:</b> {html.escape(fix)}</div>" if fix else ""
        body.append(f"<tr class='fd-row'><td class='fd-id'>{html.escape(check)}</td>"
                    f"<td class='fd-{html.escape(state)}'>{html.escape(state)}</td>"
                    f"<td>{html.escape(found)}{fix_html}</td></tr>")
    return ("<table><colgroup><col class='fd-id'><col class='fd-state'><col></colgroup>"
            "<thead><tr><th>check</th><th>status</th><th>what was found, and the fix</th></tr></thead>"
            "<tbody>" + "".join(body) + "</tbody></table>")


def _inputs():
    """The photo (upload or webcam snapshot) and the driving video; -> (source, driving)."""
    import gradio as gr
    source = gr.Image(label="source photo", sources=["upload", "webcam"], type="filepath", height=300,
                      elem_id="source")
    driving = gr.Video(label="driving video", sources=["upload"], height=300, elem_id="driving")
    return source, driving


def _checkpoint_chooser(local_paths: bool):
    """The checkpoint dropdown, and in a fold the ways to get another: fetch a published one, or add a file
    (upload; a path on this machine when the page is only reachable from it). -> the components."""
    import gradio as gr
    checkpoint = gr.Dropdown(actions.checkpoint_choices(), value=actions.AUTO_CHECKPOINT, label="checkpoint",
                             elem_id="checkpoint")
    with gr.Accordion("get another checkpoint", open=False, elem_id="more-checkpoints") as more:
        with gr.Row():
            fetch_name = gr.Dropdown(actions.fetchable(), value=None, label="fetch a published checkpoint",
                                     elem_id="fetch-name", scale=3)
            fetch = gr.Button("fetch", elem_id="fetch", scale=1)
        files = gr.File(label="or add a checkpoint file you have (a .pth.tar, or a LivePortrait set's five files)",
                        file_count="multiple", type="filepath", elem_id="checkpoint-file")
        path = gr.Textbox(label="or its path on this machine (a file, or a set's folder)", elem_id="checkpoint-path",
                          visible=local_paths)
        with gr.Row():
            name = gr.Textbox(label="name to use it by (default: from the file)", elem_id="checkpoint-name", scale=3)
            add = gr.Button("add", elem_id="add-checkpoint", scale=1)
    return checkpoint, more, fetch_name, fetch, files, path, name, add


def _animate_tab(animations: actions.Animations, folder: Path, local_paths: bool):
    import gradio as gr
    runs = actions.Runs()
    with gr.Row():
        with gr.Column():
            source, driving = _inputs()
        with gr.Column():
            checkpoint, more, fetch_name, fetch, files, path, name, add = _checkpoint_chooser(local_paths)
            with gr.Row():
                mode = gr.Radio(list(actions.MODES), value="relative", label="mode", elem_id="mode", scale=3)
                precision = gr.Dropdown(list(actions.PRECISIONS), value="auto", label="precision",
                                        elem_id="precision", scale=2)
            with gr.Row():
                best = gr.Checkbox(False, label="start from the best-matching frame", elem_id="best")
                crop = gr.Checkbox(True, label="crop to the face", elem_id="crop")
                paste = gr.Checkbox(False, label="paste back into the whole photo", elem_id="paste")
            with gr.Row():
                go = gr.Button("animate", variant="primary", elem_id="animate", scale=3)
                stop = gr.Button("stop", variant="stop", elem_id="stop", scale=1)
                clear = gr.ClearButton(value="clear", elem_id="clear", scale=1)
            status = gr.HTML(elem_id="status")
            with gr.Accordion("details", open=False, elem_id="details-fold"):
                details = gr.Markdown(elem_id="details")
            if _examples():
                # served from the package as they are, not copied among the uploads (which are pruned)
                gr.set_static_paths(_examples())
                gr.Examples([[str(f) for f in _examples()]], [source, driving],
                            label="or try the example photo and clip", elem_id="examples")
    with gr.Row():
        result = gr.Video(label="result", interactive=False, height=400, elem_id="result")
        download = gr.File(label="download", interactive=False, elem_id="download")
    clear.add([source, driving, result, download, status, details])
    source.input(_upload_check(folder, animation.check_source), [source, status], [source, status],
                 preprocess=False, concurrency_limit=None, show_progress="hidden", api_visibility="private")
    driving.upload(_upload_check(folder, animation.check_driving), [driving, status], [driving, status],
                   preprocess=False, concurrency_limit=None, show_progress="hidden", api_visibility="private")
    # a first word at once, outside the queue (a run waits there behind another visitor's), then the run itself
    go.click(_waiting(animations), None, [status], queue=False, show_progress="hidden", api_visibility="private").then(
        _animate_handler(animations, runs, folder), [source, driving, checkpoint, mode, best, crop, paste, precision],
        [result, download, status, details], api_name="animate", preprocess=False, show_progress="hidden"
    ).success(None, js=TO_RESULT)
    stop.click(_stop_handler(runs), None, None, api_name="stop", concurrency_limit=None, show_progress="hidden")
    fetch.click(_fetch_handler(), [fetch_name], [checkpoint, fetch_name, status], show_progress_on=[status])
    add.click(_add_handler(folder, local_paths), [files, path, name], [checkpoint, files, path, name, more, status],
              show_progress_on=[status], api_name="add_checkpoint")
    return checkpoint, fetch_name


def _present_now():
    """Each time the page is opened: the checkpoints as they are now (one fetched from the terminal shows)."""
    import gradio as gr
    return (gr.update(choices=actions.checkpoint_choices()),
            gr.update(choices=actions.fetchable()))


def _check_tab():
    import gradio as gr
    network = gr.Checkbox(False, label="also time the mirrors (uses the network)", elem_id="check-network")
    run = gr.Button("run the checks", elem_id="run-checks")
    table = gr.HTML(elem_id="checks")
    run.click(_checks(), [network], [table], show_progress_on=[table])


def build_page(out_dir: Path, local_paths: bool = False):
    """The gr.Blocks of the page; results are written to `out_dir` (the session folder, where uploads land too).
    local_paths: offer a checkpoint by its path on this machine (only for a page nobody else can reach)."""
    import gradio as gr
    animations = actions.Animations(out_dir)
    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tab("animate"):
            checkpoint, fetch_name = _animate_tab(animations, Path(out_dir), local_paths)
        with gr.Tab("check"):
            _check_tab()
        page.load(_present_now, None, [checkpoint, fetch_name])
    return page
