"""The web page (gradio): inputs and buttons wired to fomm_doctor.ui.actions, nothing more.

Every problem the actions raise (the CLI's own sentences) is shown on the page as that sentence; a bug shows
its type and message and is printed in full to the server's stderr.
"""
from __future__ import annotations

import traceback
from pathlib import Path

from fomm_doctor.ui import actions

TITLE = "fomm-doctor"
INTRO = ("Animate a photo by the motion of a driving video with the First Order Motion Model or TPSMM. "
         "Everything runs on this machine; nothing is uploaded anywhere else.")


def _shown(err: BaseException, uploads=()):
    """The gradio error that shows `err` on the page: its sentence, or for a bug its type and message. An
    upload is named as the user knows it (its file name), not by the server's copy of it."""
    import gradio as gr
    from fomm_core.errors import FommError
    from fomm_doctor.errors import UserError
    from fomm_doctor.net.redact import redact
    if isinstance(err, (UserError, FommError)):
        text = str(err)
    else:
        traceback.print_exception(type(err), err, err.__traceback__)
        text = f"unexpected {type(err).__name__}: {err} (details are in the terminal that runs the page)"
    for path in uploads:
        if path:
            text = text.replace(str(path), Path(path).name)
    return gr.Error(redact(text), duration=None, print_exception=False)


def _reporter(progress):
    def report(fraction, text):
        progress(fraction, desc=text)
    return report


def _animate_handler(animations: actions.Animations):
    import gradio as gr

    def animate(source, driving, checkpoint, mode, best, crop, paste, precision, progress=gr.Progress()):
        request = actions.AnimateRequest(source, driving, checkpoint, mode, best, crop, paste, precision)
        try:
            done = animations.animate(request, _reporter(progress))
        except Exception as err:
            raise _shown(err, (source, driving)) from None
        text = "\n".join([done.sentence.replace(str(done.path), done.path.name)]
                         + [f"- {n}" for n in done.notes])
        return str(done.path), str(done.path), text
    return animate


def _fetch_handler():
    import gradio as gr

    def fetch(name, progress=gr.Progress()):
        try:
            sentence = actions.fetch_checkpoint(name, _reporter(progress))
        except Exception as err:
            raise _shown(err) from None
        fetched = name if name in actions.checkpoint_choices() else actions.AUTO_CHECKPOINT
        return (gr.update(choices=actions.checkpoint_choices(), value=fetched),
                gr.update(choices=actions.fetchable(), value=None), sentence)
    return fetch


def _check_handler():
    def check(network):
        try:
            return actions.check_rows(network)
        except Exception as err:
            raise _shown(err) from None
    return check


def _animate_tab(animations: actions.Animations):
    import gradio as gr
    with gr.Row():
        with gr.Column():
            source = gr.Image(label="source photo", sources=["upload", "webcam"], type="filepath",
                              elem_id="source")
            driving = gr.Video(label="driving video", sources=["upload"], elem_id="driving")
        with gr.Column():
            checkpoint = gr.Dropdown(actions.checkpoint_choices(), value=actions.AUTO_CHECKPOINT,
                                     label="checkpoint", elem_id="checkpoint")
            with gr.Row():
                fetch_name = gr.Dropdown(actions.fetchable(), value=None, label="fetch a published checkpoint",
                                         elem_id="fetch-name", scale=3)
                fetch = gr.Button("fetch", elem_id="fetch", scale=1)
            mode = gr.Radio(list(actions.MODES), value="relative", label="mode", elem_id="mode")
            with gr.Row():
                best = gr.Checkbox(False, label="start from the best-matching frame", elem_id="best")
                crop = gr.Checkbox(True, label="crop to the face", elem_id="crop")
                paste = gr.Checkbox(False, label="paste back into the whole photo", elem_id="paste")
            precision = gr.Dropdown(list(actions.PRECISIONS), value="auto", label="precision",
                                    elem_id="precision")
            go = gr.Button("animate", variant="primary", elem_id="animate")
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        result = gr.Video(label="result", interactive=False, elem_id="result")
        download = gr.File(label="download", interactive=False, elem_id="download")
    go.click(_animate_handler(animations),
             [source, driving, checkpoint, mode, best, crop, paste, precision], [result, download, status])
    fetch.click(_fetch_handler(), [fetch_name], [checkpoint, fetch_name, status])
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
    table = gr.Dataframe(headers=list(actions.CHECK_COLUMNS), interactive=False, wrap=True, elem_id="checks")
    run.click(_check_handler(), [network], [table])


def build_page(out_dir: Path):
    """The gr.Blocks of the page; results are written to `out_dir`."""
    import gradio as gr
    animations = actions.Animations(out_dir)
    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tab("animate"):
            checkpoint, fetch_name = _animate_tab(animations)
        with gr.Tab("check"):
            _check_tab()
        page.load(_present_now, None, [checkpoint, fetch_name])
    return page
