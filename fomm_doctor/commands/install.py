"""`fomm-doctor install`: parse the options into an InstallOptions, hand install/ this machine's probes (check's
own: install/ never imports checks/), show the plan, draw the progress bar (the work is fomm_doctor.install)."""
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.errors import ExitCode, UserError
from fomm_doctor.install.backend import Backend, Kind
from fomm_doctor.install.options import InstallOptions, Probes
from fomm_doctor.install.pip_persist import public_change
from fomm_doctor.net.redact import redact, redact_data
from fomm_doctor.units import byte_size


# The command's options, one place each: `install` below lists them in this order.
_OPTIONS = {
    "python": typer.Option(None, "--python", help="Install into this Python (default: the one running "
                           "fomm-doctor)."),
    "backend": typer.Option("auto", "--backend", help="auto, cpu, a CUDA build such as cu126, a ROCm build such as "
                            "rocm6.4, or xpu."),
    "torch": typer.Option(None, "--torch", help="torch version (default: the newest that fits)."),
    "mirror": typer.Option(None, "--mirror", help="tsinghua, official, auto (fastest), a mirror name from "
                           "wheels_index.json, or an index URL (default: pip's own)."),
    "only": typer.Option(None, "--only", help="Install only these packages (comma list), e.g. torch."),
    "retries": typer.Option(8, "--retries", help="Failed attempts per source before moving to the next."),
    "timeout": typer.Option(15.0, "--timeout", help="Seconds without data before a connection counts as stalled "
                            "(it is then resumed)."),
    "connections": typer.Option(None, "--connections", help="Parallel connections for the torch download "
                                "(default: several where the server allows byte ranges)."),
    "pytorch_index": typer.Option(None, "--pytorch-index", help="A mirror of the PyTorch wheel index "
                                  "(<URL>/<build>/torch/), e.g. https://mirror.sjtu.edu.cn/pytorch-wheels/."),
    "platform": typer.Option(None, "--platform", help="Plan for another machine: pip platform tag, e.g. "
                             "manylinux_2_28_x86_64, win_amd64, macosx_11_0_arm64."),
    "python_version": typer.Option(None, "--python-version", help="With --platform: its Python, e.g. 3.12."),
    "driver": typer.Option(None, "--driver", help="NVIDIA driver version of the target, or none."),
    "gpu_arch": typer.Option(None, "--gpu-arch", help="Target GPUs: compute capabilities (8.6,7.5) or AMD targets "
                             "(gfx1100)."),
    "dry_run": typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    "as_json": typer.Option(False, "--json", help="Print the plan and the outcome as JSON."),
    "yes": typer.Option(False, "--yes", "-y", help="Do not ask before installing."),
    "persist": typer.Option(False, "--persist", help="Also write the chosen mirror into your pip config."),
    "cache_dir": typer.Option(None, "--cache-dir", help="Where partial and finished downloads are kept (default: "
                              "the user cache folder)."),
    "download_only": typer.Option(None, "--download-only", help="Put torch and everything it needs, as wheels for "
                                  "the planned machine, in this folder."),
    "from_dir": typer.Option(None, "--from", help="Install a --download-only folder: only the wheels its manifest "
                            "names, each checked by sha256, with no network and none of pip's settings."),
    "allow_unverified": typer.Option(False, "--allow-unverified", help="Install a torch wheel from the network even "
                                     "when no sha256 is published for it (a local file is always used as it is)."),
    "official_pypi": typer.Option(None, "--official-pypi", help="The index a mirror's plain torch wheel is "
                                  "compared with by sha256 (default https://pypi.org/simple/; none: do not "
                                  "compare)."),
    "official_pytorch": typer.Option(None, "--official-pytorch", help="The same for +cpu/+cuXXX builds (default "
                                     "https://download.pytorch.org/whl/; none: do not compare)."),
}


@dataclass(frozen=True)
class CommandOptions:
    """The command line, parsed and checked: what to install, and what the command does with the plan."""
    install: InstallOptions
    dry_run: bool = False  # print the plan, change nothing
    as_json: bool = False
    yes: bool = False
    persist: bool = False
    download_only: Optional[Path] = None
    from_dir: Optional[Path] = None


def install(
    python: Optional[str] = _OPTIONS["python"],
    backend: str = _OPTIONS["backend"],
    torch: Optional[str] = _OPTIONS["torch"],
    mirror: Optional[str] = _OPTIONS["mirror"],
    only: Optional[str] = _OPTIONS["only"],
    retries: int = _OPTIONS["retries"],
    timeout: float = _OPTIONS["timeout"],
    connections: Optional[int] = _OPTIONS["connections"],
    pytorch_index: Optional[str] = _OPTIONS["pytorch_index"],
    platform: Optional[str] = _OPTIONS["platform"],
    python_version: Optional[str] = _OPTIONS["python_version"],
    driver: Optional[str] = _OPTIONS["driver"],
    gpu_arch: Optional[str] = _OPTIONS["gpu_arch"],
    dry_run: bool = _OPTIONS["dry_run"],
    as_json: bool = _OPTIONS["as_json"],
    yes: bool = _OPTIONS["yes"],
    persist: bool = _OPTIONS["persist"],
    cache_dir: Optional[Path] = _OPTIONS["cache_dir"],
    download_only: Optional[Path] = _OPTIONS["download_only"],
    from_dir: Optional[Path] = _OPTIONS["from_dir"],
    allow_unverified: bool = _OPTIONS["allow_unverified"],
    official_pypi: Optional[str] = _OPTIONS["official_pypi"],
    official_pytorch: Optional[str] = _OPTIONS["official_pytorch"],
) -> None:
    """Install the torch build that fits this machine (and the rest FOMM needs), through a bad network.

    Reads the interpreter's wheel tags, the NVIDIA driver and GPU, and the indexes; downloads with resume,
    retries and mirror failover; verifies sha256; installs with pip; checks the result in a fresh process.
    """
    try:
        _run(CommandOptions(
            _install_options(python=python, backend=backend, torch=torch, mirror=mirror, only=only, retries=retries,
                             timeout=timeout, connections=connections, pytorch_index=pytorch_index,
                             platform=platform, python_version=python_version, driver=driver, gpu_arch=gpu_arch,
                             dry_run=dry_run or download_only is not None, cache_dir=cache_dir,
                             allow_unverified=allow_unverified, official_pypi=official_pypi,
                             official_pytorch=official_pytorch),
            dry_run, as_json, yes, persist, download_only, from_dir))
    except UserError as err:
        # one rule for every sentence that leaves this command: credentials in URLs are masked
        err.args = (redact(str(err)),) + err.args[1:]
        raise
    except OSError as err:  # a file or folder we were told to use cannot be used: one sentence, not a traceback
        what = f"Could not use {redact(str(err.filename))}" if err.filename else "A file operation failed"
        raise UserError(f"{what}: {err.strerror or type(err).__name__}.") from None


def _probes() -> Probes:
    """This machine's GPUs and mirror latencies, by check's probes."""
    from fomm_doctor.checks.gpu import probe_gpus
    from fomm_doctor.checks.mirrors import probe_mirrors
    return Probes(gpus=probe_gpus, mirrors=probe_mirrors)


def _run(c: CommandOptions) -> None:
    from fomm_doctor.install import bundle, execute
    from fomm_doctor.install.plan import make_plan

    if c.from_dir is not None:
        _install_from(bundle, c.from_dir, c.install.python, c.as_json)
        return
    _check_folders(c)
    console = None if c.as_json else _console()
    plan = make_plan(c.install, _probes())
    if console:
        _show_plan(console, plan)
    change = _persist_change(plan, c.persist)
    if console and change:
        from fomm_doctor.install.pip_persist import describe_change
        _say(console, "pip config (--persist):\n" + describe_change(change))
    if c.download_only is not None:
        _download_bundle(bundle, plan, c.install, c.download_only, console)
        return
    if c.dry_run:
        if c.as_json:
            _echo_json({"plan": plan.to_json(), "persist": public_change(change), "dry_run": True})
        raise typer.Exit(ExitCode.OK)
    if not c.yes:
        _confirm()
    _carry_out(execute, plan, c.install, change, console)


def _check_folders(c: CommandOptions) -> None:
    """A folder a download will write to must be usable before any network work."""
    from fomm_doctor.install.execute import check_folder
    if c.download_only is not None:
        check_folder("--download-only", c.download_only)
    if not c.dry_run or c.download_only is not None:
        from fomm_core.cache import downloads_dir
        check_folder("--cache-dir", c.install.cache_dir or downloads_dir())


def _console():
    from rich.console import Console
    console = Console(stderr=False, highlight=False)
    console.print("[dim]reading the interpreter, GPU and indexes...[/dim]")
    return console


def _confirm() -> None:
    """Ask before installing; with no terminal to ask on, refuse with the flag that skips the question."""
    if not sys.stdin.isatty():
        raise UserError("Nothing was installed: add --yes to install without a prompt (or --dry-run to see "
                        "the plan only).")
    if not typer.confirm("Install this?", default=True):
        raise typer.Exit(ExitCode.PROBLEM)


def _carry_out(execute, plan, opts: InstallOptions, change, console) -> None:
    """Install what the plan says, then write the pip config change (--persist) and report."""
    outcome = _execute(execute, plan, opts, console)
    persisted = public_change(change)
    if change:
        persisted["overridden_by"] = _persist_applied(change, plan)
    if console is None:
        _echo_json({"plan": outcome.plan.to_json(), "outcome": outcome.to_json(), "persist": persisted})
        return
    _show_outcome(console, outcome)
    if persisted and persisted["overridden_by"]:
        _say(console, f"warning  --persist: {persisted['overridden_by']}", "yellow")


def _persist_applied(change: dict, plan) -> Optional[str]:
    """Write the pip config change, then read pip's settings as pip will: what overrides the index written
    (an environment variable or another config file), or None."""
    import os
    from fomm_doctor.install.pip_persist import apply_change, overridden_by
    from fomm_doctor.install.plan import pip_settings
    apply_change(change)
    env = dict(os.environ)
    return overridden_by(change, plan.dependency_index.index_url, pip_settings(plan.machine.py, env), env)


def _echo_json(data: dict) -> None:
    """--json output: every string with its credentials masked (the plan holds the real URLs)."""
    typer.echo(json.dumps(redact_data(data), indent=2))


def _say(console, text: str, style: Optional[str] = None) -> None:
    """One line of text for the terminal: credentials masked, and no part of it read as rich markup."""
    from rich.text import Text
    console.print(Text(redact(text), style=style or ""))


def _verified(how: str) -> str:
    """How a wheel was checked, in words. Imported here: install.hashes loads requests (a tenth of a second that
    every other command, and --help, would pay at start)."""
    from fomm_doctor.install.hashes import VERIFIED_WORDS
    return VERIFIED_WORDS[how]


def _show_outcome(console, outcome) -> None:
    v, t = outcome.verify, outcome.torch
    checked = f"; {_verified(t.fetched.verified)}" if t and t.fetched else ""
    if v:
        console.print(f"[green]✓[/green] torch {v.version} ({t.action}{checked}) imports and computes"
                      + (f"; CUDA available: {v.facts['cuda_available']}" if "cuda_available" in v.facts else ""))
    if outcome.packages:
        console.print(f"[green]✓[/green] {', '.join(outcome.packages)}")
    console.print("next: [bold]fomm-doctor demo[/bold]")


def _download_bundle(bundle, plan, opts: InstallOptions, folder: Path, console) -> None:
    made = bundle.download_bundle(plan, opts, folder)
    if console is None:
        _echo_json({"plan": made.plan.to_json(), "bundle": made.to_json()})
        return
    _say(console, f"✓ {len(made.files)} wheels in {made.folder} (torch: {_verified(made.verified)}); on the "
                  f"other machine: fomm-doctor install --from {made.folder}")


def _install_from(bundle, folder: Path, python: Optional[str], as_json: bool) -> None:
    outcome = bundle.install_bundle(folder, python or sys.executable)
    if as_json:
        _echo_json({"outcome": outcome.to_json()})
        return
    version = outcome.verify.version if outcome.verify else None
    typer.echo(redact(f"✓ torch {version} installed from {folder} (no network; {_verified('local')}) "
                      f"imports and computes"))


# ---- the options, checked before any facts are gathered ------------------------------------------------------

def _install_options(*, backend: str, only: Optional[str], **kw) -> InstallOptions:
    """Check the options that need no facts (one sentence each) and bundle them."""
    opts = InstallOptions(backend=_backend(backend), only=_names(only), **kw)
    _check_values(opts)
    _check_locations(opts)
    return opts


def _backend(text: str) -> Optional[Backend]:
    """`--backend`: auto (None) or a build torch publishes (a CUDA build names its version)."""
    text = text.strip().lower()
    if text == "auto":
        return None
    build = Backend.from_label(text)
    if build is None or (build.kind is Kind.CUDA and not build.version):
        raise UserError(f"--backend must be auto, cpu, a CUDA build like cu126, a ROCm build like rocm6.4, or xpu; "
                        f"not {text!r}.")
    return build


def _names(only: Optional[str]) -> Optional[tuple]:
    """`--only torch,rich` -> ("torch", "rich"); nothing -> None (everything)."""
    return tuple(p.strip() for p in only.split(",") if p.strip()) if only else None


def _check_values(opts: InstallOptions) -> None:
    if opts.other_machine and not opts.dry_run:
        raise UserError("--platform and --python-version plan for another machine: add --dry-run or "
                        "--download-only DIR.")
    if opts.connections is not None and not 1 <= opts.connections <= 16:
        raise UserError(f"--connections must be between 1 and 16, not {opts.connections}.")
    if opts.retries < 1 or not 0 < opts.timeout <= 600:
        raise UserError("--retries must be at least 1 and --timeout between 0 and 600 seconds.")


def _check_locations(opts: InstallOptions) -> None:
    """Every location from the command line is checked before any network work: one sentence, no retries."""
    from fomm_doctor.install.sources import check_url
    if opts.mirror and ("://" in opts.mirror or opts.mirror.startswith("/")):
        check_url("--mirror", opts.mirror)
    for option, value in (("--pytorch-index", opts.pytorch_index), ("--official-pypi", opts.official_pypi),
                          ("--official-pytorch", opts.official_pytorch)):
        if value and value.strip().lower() != "none":
            check_url(option, value)
    if opts.cache_dir is not None:
        from fomm_doctor.install.execute import check_folder
        check_folder("--cache-dir", opts.cache_dir)


# ---- the plan on a terminal ---------------------------------------------------------------------------------

def _persist_change(plan, persist: bool):
    if not persist:
        return None
    if not plan.dependency_index:
        raise UserError("--persist needs a mirror to write: add --mirror tsinghua (or auto, or a URL).")
    import os
    from fomm_doctor.install.pip_persist import persist_change
    facts = {"platform": plan.machine.py.platform, "env": dict(os.environ), "home": str(Path.home())}
    return persist_change(plan.dependency_index.index_url, facts)


def _show_plan(console, plan) -> None:
    m, py = plan.machine, plan.machine.py
    _say(console, f"python   {py.executable or 'another machine: ' + m.pkey} ({py.version}, {py.bits}-bit, "
                  f"{py.platform} {py.machine}; tags {', '.join(py.tags[:2])}, ...)")
    gpus = ", ".join(f"{g.name} ({g.compute_capability})" for g in m.nvidia_gpus) or "none"
    _say(console, f"nvidia   driver {m.driver or 'not found'}; GPUs {gpus}")
    mirror = plan.mirror
    _say(console, f"mirror   {mirror.name}: {mirror.pypi or ''}"
                  + (f" + {mirror.pytorch.url}" if mirror.pytorch else ""))
    if plan.torch:
        _show_torch(console, plan.torch)
    for w in plan.warnings:
        _say(console, f"warning  {w}", "yellow")
    if plan.packages:
        _say(console, f"packages {', '.join(plan.packages)}")


def _show_torch(console, t) -> None:
    size = byte_size(t.size) if t.size else "size unknown"
    check = f"sha256 {t.sha256[:16]}..." if t.sha256 else _verified(t.verified)
    _say(console, f"torch    {t.version} [{t.backend}] ({t.why})")
    _say(console, f"wheel    {t.file} ({size}, {check})")
    _say(console, f"from     {t.urls[0]}" + (f" (+{len(t.urls) - 1} more)" if len(t.urls) > 1 else ""))
    for x in (x for x in t.sources if not x.ok):
        _say(console, f"note     {x.url} could not be read: {x.error or ''}", "yellow")
    if t.links_elsewhere:
        _say(console, f"note     the index links to {', '.join(t.links_elsewhere)}: the download goes "
                      f"there, not to the mirror", "yellow")
    if t.already_installed:
        _say(console, "torch is already installed in this build: no download", "green")


def _execute(execute, plan, opts: InstallOptions, console):
    if console is None:
        return execute.execute(plan, opts)
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    with Progress(TextColumn("download"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task("torch", total=None, visible=False)

        def progress(done, total):
            bar.update(task, completed=done, total=total, visible=True)

        def say(text):
            _say(bar.console, text, "dim")
        return execute.execute(plan, opts, progress=progress, say=say)
