"""One module per command: each parses its options, calls the modules that do the work, and renders.

What every command shares is here.
"""
from contextlib import contextmanager

import typer

from fomm_doctor import animation


def load(choice: animation.ModelChoice, models: animation.Models = None) -> animation.Loaded:
    """The model for `choice` (kept in `models` when given), with a progress bar on stderr for the one-time work of
    fast/int8; its notes said."""
    with _one_time_progress() as bar_step:
        loaded = (models or animation.Models()).load(choice, on_step=bar_step)
    for note in loaded.notes:
        typer.echo(note, err=True)
    return loaded


@contextmanager
def _one_time_progress():
    """A progress bar on stderr for the one-time work of --precision fast/int8 (int8 build, path measurement);
    nothing is shown when that work is already cached."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = None

    def on_step(done, total, what):
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done, total=total, description=what)
    try:
        yield on_step
    finally:
        bar.stop()
