"""`fomm-doctor checkpoints ...`: list, fetch, add, slim, verify. Parsing and rendering only; the work is in
fomm_doctor.checkpoints (store, fetch, add, slim)."""
import json
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.units import byte_size

app = typer.Typer(help="Find, fetch, verify and register FOMM, TPSMM and LivePortrait checkpoints.", no_args_is_help=True)

DIR_HELP = "Checkpoint folder to use instead of the per-user one (also: env FOMM_CHECKPOINTS_DIR)."


def _file_state(item: dict) -> str:
    """How one present file is shown: never "ok" for a file only known to load."""
    state = item.get("state")
    if state == "ok":
        return "verified"
    if state == "wrong":
        return f"WRONG: {item.get('why') or 'its sha256 does not match'}"
    if state == "loads, unverified":
        return "loads, unverified"
    if state == "partly verified":  # a set: some of its files have no published sha256
        return f"partly verified: {item.get('why')}"
    return "present, unchecked (no sha256 published or recorded)"


def _state(row: dict) -> str:
    if not row["present"]:
        return "not downloaded"
    return _file_state(row["present"][0])


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
          dir: Optional[Path] = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """What is known, what is present where, verified or not, with sizes."""
    from fomm_doctor.checkpoints.store import checkpoint_facts
    from fomm_doctor.net.redact import redact_data
    facts = redact_data(checkpoint_facts(dir))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    from rich.console import Console

    from fomm_doctor.render import new_table
    console = Console()
    table = new_table(console, "Checkpoints (FOMM, TPSMM and LivePortrait)", ["name", "config", "file", "size", "state", "where"])
    for row in facts["checkpoints"]:
        here = row["present"][0] if row["present"] else None
        table.add_row(row["name"], row["config"] or row.get("family") or "?", row["file"],
                      byte_size(here["size"] if here else row["size"]), _state(row),
                      here["path"] if here else f"{row['sources']} source(s) to fetch from")
    console.print(table)
    console.print(f"searched: {', '.join(facts['dirs'])}")
    console.print(f"new checkpoints go to: {facts['store']}")


@app.command()
def fetch(name: str = typer.Argument(..., help="A name from `checkpoints list`, e.g. vox."),
          mirror: Optional[str] = typer.Option(None, "--mirror", help="A URL, or a source kind/host to use "
                                               "(github-release, gdrive-folder, yandex, s3...)."),
          dir: Optional[Path] = typer.Option(None, "--dir", help=DIR_HELP),
          connections: int = typer.Option(1, "--connections", help="Parallel connections per file."),
          retries: int = typer.Option(6, "--retries", help="Failed attempts per source before moving to the next "
                                      "(waits between them double from half a second)."),
          as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Download a published checkpoint: resumable, failing over between its mirrors, verified."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn
    from fomm_doctor.checkpoints.fetch import fetch as do_fetch
    from fomm_doctor.errors import UserError
    from fomm_doctor.net.redact import redact, redact_data
    if retries < 1:
        raise UserError(f"--retries must be at least 1, not {retries}.")
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True, disable=as_json) as bar:
        task = bar.add_task(name, total=None)
        result = do_fetch(name, mirror=mirror, override_dir=dir, connections=connections, retries=retries,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    state = getattr(result, "state", None) or ("ok" if result.verified_by in ("sha256", "md5") else "loads, unverified")
    if as_json:
        typer.echo(json.dumps(redact_data({
            "name": result.name, "path": str(result.path), "url": result.url, "sha256": result.sha256,
            "config": result.config, "verified_by": result.verified_by, "state": state, "already": result.already,
            "attempts": [{"url": u, "outcome": o} for u, o in result.attempts]}), indent=2))
        return
    for url, outcome in result.attempts[:-1]:
        typer.echo(redact(f"skipped {url}: {outcome}"), err=True)
    typer.echo(result.sentence())


@app.command()
def add(path: Path = typer.Argument(..., help="The .pth.tar you downloaded (do not unzip it), or the folder of a "
                                             "checkpoint published as a set of files (LivePortrait)."),
        name: Optional[str] = typer.Option(None, "--name", help="Name to use it by (default: from the file)."),
        link: bool = typer.Option(False, "--link", help="Link to the file instead of copying it."),
        dir: Optional[Path] = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Register a checkpoint file you have: checked, recognised and placed where animate finds it by name."""
    from fomm_doctor.checkpoints.add import add as do_add
    result = do_add(path, name=name, link=link, override_dir=dir)
    checked = {"load": "loads, unverified", "partly": "partly verified: see the note",
               "sha256": "matches the published sha256", "md5": "matches the published md5"}[result.verified_by]
    what = (f"{len(result.entry['files'])} files" if result.entry and "files" in result.entry
            else f"config {result.config or 'stored in the file'}")
    digest = f"; sha256 {result.sha256}" if result.sha256 else ""
    typer.echo(f"added {result.name}: {result.path} ({result.placed}; {what}; {byte_size(result.size)}; {checked}"
               f"{digest})")
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"use it with: fomm-doctor animate --checkpoint {result.name} ...")


@app.command()
def slim(name: str = typer.Argument(..., help="A checkpoint name or path."),
         half: bool = typer.Option(False, "--half", help="Store weights as float16 (half the size again)."),
         out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output file."),
         dir: Optional[Path] = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Write an inference-only copy (generator + keypoint detector), loadable by the original code too."""
    from fomm_doctor.checkpoints.slim import slim as do_slim
    result = do_slim(name, half=half, out=out, override_dir=dir)
    typer.echo(f"wrote {result.path}: {byte_size(result.size)} (from {byte_size(result.original_size)}; "
               f"config {result.config or 'stored in the file'}{'; float16 storage' if half else ''})")


@app.command()
def verify(name: Optional[str] = typer.Argument(None, help="One checkpoint name (default: all present)."),
           dir: Optional[Path] = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Compare present checkpoint files with their published (or recorded) size and sha256."""
    from fomm_doctor.checkpoints.store import list_checkpoints
    from fomm_doctor.errors import UserError
    rows = [r for r in list_checkpoints(dir) if r["present"] and (name is None or r["name"] == name)]
    if name is not None and not rows:
        raise UserError(f"no checkpoint named '{name}' is present; see `fomm-doctor checkpoints list`.")
    if not rows:
        typer.echo("no checkpoint files present; `fomm-doctor checkpoints fetch NAME` gets one.")
    bad = 0
    for r in rows:
        for p in r["present"]:
            state = "ok" if p.get("state") == "ok" else _file_state(p)
            bad += p.get("state") == "wrong"
            typer.echo(f"{r['name']}: {p['path']}: {state}")
    if bad:
        raise UserError(f"{bad} checkpoint file(s) contradict their published or recorded size or sha256: "
                        "delete them and fetch again.", 1)
