"""`fomm-doctor install`: parse options, show the plan, draw the progress bar (the work is fomm_doctor.install.plan)."""
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.errors import ExitCode, UserError
from fomm_doctor.install.pip_persist import public_change
from fomm_doctor.net.redact import redact, redact_data


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
    "from_dir": typer.Option(None, "--from", help="Install a --download-only folder, with no network."),
    "allow_unverified": typer.Option(False, "--allow-unverified", help="Install a torch wheel from the network even "
                                     "when no sha256 is published for it (a local file is always used as it is)."),
    "official_pypi": typer.Option(None, "--official-pypi", help="The index a mirror's plain torch wheel is "
                                  "compared with by sha256 (default https://pypi.org/simple/; none: do not "
                                  "compare)."),
    "official_pytorch": typer.Option(None, "--official-pytorch", help="The same for +cpu/+cuXXX builds (default "
                                     "https://download.pytorch.org/whl/; none: do not compare)."),
}
# What `_options` hands to InstallOptions; the rest steer the command itself.
_PLAN_OPTIONS = ("python", "backend", "torch", "mirror", "only", "retries", "timeout", "connections",
                 "pytorch_index", "platform", "python_version", "driver", "gpu_arch", "cache_dir",
                 "allow_unverified", "official_pypi", "official_pytorch")


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
        _install(locals())
    except UserError as err:
        # one rule for every sentence that leaves this command: credentials in URLs are masked
        err.args = (redact(str(err)),) + err.args[1:]
        raise
    except OSError as err:  # a file or folder we were told to use cannot be used: one sentence, not a traceback
        what = f"Could not use {redact(str(err.filename))}" if err.filename else "A file operation failed"
        raise UserError(f"{what}: {err.strerror or type(err).__name__}.") from None


def _install(a: dict) -> None:
    from fomm_doctor.install import execute
    from fomm_doctor.install import plan as installer

    if a["from_dir"] is not None:
        _install_from(execute, a["from_dir"], a["python"], a["as_json"])
        return
    download_only = a["download_only"]
    opts = _options(installer, dry_run=a["dry_run"] or download_only is not None,
                    **{k: a[k] for k in _PLAN_OPTIONS})
    _check_folders(execute, opts, a["dry_run"], download_only)
    console = None if a["as_json"] else _console()
    plan = installer.make_plan(opts)
    if console:
        _show_plan(console, plan)
    change = _persist_change(plan, a["persist"])
    if console and change:
        from fomm_doctor.install.pip_persist import describe_change
        _say(console, "pip config (--persist):\n" + describe_change(change))
    if download_only is not None:
        _download_bundle(execute, plan, opts, download_only, console)
        return
    if a["dry_run"]:
        if a["as_json"]:
            _echo_json({"plan": plan, "persist": public_change(change), "dry_run": True})
        raise typer.Exit(ExitCode.OK)
    if not a["yes"]:
        _confirm()
    _carry_out(execute, plan, opts, change, console)


def _check_folders(execute, opts, dry_run: bool, download_only: Optional[Path]) -> None:
    """A folder a download will write to must be usable before any network work."""
    if download_only is not None:
        execute.check_folder("--download-only", download_only)
    if not dry_run or download_only is not None:
        from fomm_doctor.net import download as dl
        execute.check_folder("--cache-dir", opts.cache_dir or dl.default_cache_dir())


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


def _carry_out(execute, plan: dict, opts, change, console) -> None:
    """Install what the plan says, then write the pip config change (--persist) and report."""
    outcome = _execute(execute, plan, opts, console)
    if change:
        from fomm_doctor.install.pip_persist import apply_change
        apply_change(change)
    if console is None:
        _echo_json({"plan": plan, "outcome": outcome, "persist": public_change(change)})
        return
    _show_outcome(console, outcome)


def _echo_json(data: dict) -> None:
    """--json output: every string with its credentials masked (the plan holds the real URLs)."""
    typer.echo(json.dumps(redact_data(data), indent=2))


def _say(console, text: str, style: Optional[str] = None) -> None:
    """One line of text for the terminal: credentials masked, and no part of it read as rich markup."""
    from rich.text import Text
    console.print(Text(redact(text), style=style or ""))


def _show_outcome(console, outcome: dict) -> None:
    from fomm_doctor.install.plan import VERIFIED_WORDS
    v = outcome.get("verify") or {}
    t = outcome.get("torch") or {}
    checked = f"; {VERIFIED_WORDS[t['verified']]}" if t.get("verified") in VERIFIED_WORDS else ""
    if v:
        console.print(f"[green]✓[/green] torch {v.get('version')} ({t.get('action')}{checked}) imports and computes"
                      + (f"; CUDA available: {v.get('cuda_available')}" if "cuda_available" in v else ""))
    if outcome.get("packages"):
        console.print(f"[green]✓[/green] {', '.join(outcome['packages']['list'])}")
    console.print("next: [bold]fomm-doctor demo[/bold]")


def _download_bundle(execute, plan: dict, opts, folder: Path, console) -> None:
    bundle = execute.download_bundle(plan, opts, folder)
    if console is None:
        _echo_json({"plan": plan, "bundle": bundle})
        return
    from fomm_doctor.install.plan import VERIFIED_WORDS
    _say(console, f"✓ {len(bundle['files'])} wheels in {bundle['folder']} (torch: "
                  f"{VERIFIED_WORDS[bundle['verified']]}); on the other machine: "
                  f"fomm-doctor install --from {bundle['folder']}")


def _install_from(execute, folder: Path, python: Optional[str], as_json: bool) -> None:
    from fomm_doctor.install.plan import VERIFIED_WORDS
    outcome = execute.install_bundle(folder, python or sys.executable)
    if as_json:
        _echo_json({"outcome": outcome})
        return
    v = outcome["verify"] or {}
    typer.echo(redact(f"✓ torch {v.get('version')} installed from {folder} (no network; "
                      f"{VERIFIED_WORDS[outcome['torch']['verified']]}) imports and computes"))


def _options(installer, **kw):
    """Check the options that need no facts (one sentence each) and bundle them."""
    kw["backend"] = kw["backend"].strip().lower()
    _check_values(kw)
    _check_locations(kw)
    kw["only"] = [p.strip() for p in kw["only"].split(",") if p.strip()] if kw["only"] else None
    return installer.InstallOptions(**kw)


def _check_values(kw: dict) -> None:
    import re
    if not re.fullmatch(r"auto|cpu|xpu|cu\d{3}|rocm\d+(\.\d+){1,2}", kw["backend"]):
        raise UserError(f"--backend must be auto, cpu, a CUDA build like cu126, a ROCm build like rocm6.4, or xpu; "
                        f"not {kw['backend']!r}.")
    if (kw["platform"] or kw["python_version"]) and not kw["dry_run"]:
        raise UserError("--platform and --python-version plan for another machine: add --dry-run or "
                        "--download-only DIR.")
    if kw["connections"] is not None and not 1 <= kw["connections"] <= 16:
        raise UserError(f"--connections must be between 1 and 16, not {kw['connections']}.")
    if kw["retries"] < 1 or not 0 < kw["timeout"] <= 600:
        raise UserError("--retries must be at least 1 and --timeout between 0 and 600 seconds.")


def _check_locations(kw: dict) -> None:
    """Every location from the command line is checked before any network work: one sentence, no retries."""
    from fomm_doctor.install.sources import check_url
    if kw["mirror"] and ("://" in kw["mirror"] or kw["mirror"].startswith("/")):
        check_url("--mirror", kw["mirror"])
    for option, key in (("--pytorch-index", "pytorch_index"), ("--official-pypi", "official_pypi"),
                        ("--official-pytorch", "official_pytorch")):
        if kw[key] and kw[key].strip().lower() != "none":
            check_url(option, kw[key])
    if kw["cache_dir"] is not None:
        from fomm_doctor.install.execute import check_folder
        check_folder("--cache-dir", kw["cache_dir"])


def _persist_change(plan: dict, persist: bool):
    if not persist:
        return None
    dep = plan.get("dependency_index")
    if not dep:
        raise UserError("--persist needs a mirror to write: add --mirror tsinghua (or auto, or a URL).")
    import os
    from fomm_doctor.install.pip_persist import persist_change
    facts = {"platform": plan["python"]["platform"], "env": dict(os.environ), "home": str(Path.home())}
    return persist_change(dep["index_url"], facts)


def _show_plan(console, plan: dict) -> None:
    py = plan["python"]
    _say(console, f"python   {py['executable'] or 'another machine: ' + plan['platform_key']} ({py['version']}, "
                  f"{py['bits']}-bit, {py['platform']} {py['machine']}; tags {', '.join(plan['tags'][:2])}, ...)")
    nv = plan["nvidia"]
    gpus = ", ".join(f"{g['name']} ({g['compute_capability']})" for g in nv["gpus"]) or "none"
    _say(console, f"nvidia   driver {nv['driver_version'] or 'not found'}; GPUs {gpus}")
    m = plan["mirror"]
    _say(console, f"mirror   {m['name']}: {m['pypi'] or ''}" + (f" + {m['pytorch']}" if m.get("pytorch") else ""))
    if plan.get("torch"):
        _show_torch(console, plan["torch"])
    for w in plan.get("warnings") or []:
        _say(console, f"warning  {w}", "yellow")
    if plan["packages"]:
        _say(console, f"packages {', '.join(plan['packages'])}")


def _show_torch(console, t: dict) -> None:
    from fomm_doctor.install.plan import VERIFIED_WORDS
    size = f"{t['size'] / 1e6:.0f} MB" if t.get("size") else "size unknown"
    check = f"sha256 {t['sha256'][:16]}..." if t["sha256"] else VERIFIED_WORDS[t["verified"]]
    _say(console, f"torch    {t['version']} [{t['backend']}] ({t['why']})")
    _say(console, f"wheel    {t['file']} ({size}, {check})")
    _say(console, f"from     {t['urls'][0]}" + (f" (+{len(t['urls']) - 1} more)" if len(t["urls"]) > 1 else ""))
    for x in (x for x in t.get("sources", []) if not x["ok"]):
        _say(console, f"note     {x['url']} could not be read: {x['error'] or ''}", "yellow")
    if t.get("links_elsewhere"):
        _say(console, f"note     the index links to {', '.join(t['links_elsewhere'])}: the download goes "
                      f"there, not to the mirror", "yellow")
    if t["already_installed"]:
        _say(console, "torch is already installed in this build: no download", "green")


def _execute(execute, plan, opts, console):
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
