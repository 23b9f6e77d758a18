"""`fomm-doctor bench`: the original FOMM code against our exact and fast paths, same random weights and inputs."""
import json

import typer

from fomm_doctor.commands import require_torch
from fomm_doctor.errors import UserError


def bench(
    config: str = typer.Option("vox-256", "--config", help="Shipped config name or YAML path."),
    size: int = typer.Option(256, "--size", help="Frame side in pixels (a multiple of 128 for vox)."),
    frames: int = typer.Option(4, "--frames", help="Driving frames per timed run."),
    runs: int = typer.Option(3, "--runs", help="Timed runs per path (the median is reported), after one warm-up."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: the CPU count, at most 4)."),
    paths: str = typer.Option("reference,exact,fast", "--paths", help="Comma-separated: reference, exact, fast; ablations: cached, exact-b1, fast-b1, fast-unfused, exact-compiled, fast-compiled."),
    smoke: bool = typer.Option(False, "--smoke", help="128x128, 2 frames, 1 run: checks it works, not speed."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Measure frames/s, peak memory and accuracy of each inference path against the original code."""
    require_torch()
    from fomm_core import bench as core

    if smoke:
        size, frames, runs = 128, 2, 1
    chosen = [p.strip() for p in paths.split(",") if p.strip()]
    if as_json:
        report = core.run_benchmark(config, size, frames, runs, threads, chosen)
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    console = Console()
    with console.status("benchmark") as status:
        report = core.run_benchmark(config, size, frames, runs, threads, chosen,
                                    on_path=lambda what: status.update(f"benchmark: {what}"))
    console.print(render(report))
    if not report["reference_available"]:
        console.print("[yellow]the reference (original code) is not installed: "
                      "pip install --no-deps deep-animator to compare with it.[/]")
    failed = [r for r in report["rows"] if "error" in r]
    if failed:
        raise UserError(f"the {failed[0]['name']} path failed: {failed[0]['error']}")


def render(report):
    """A rich table of the report."""
    from rich.table import Table
    env = report["environment"]
    table = Table(title=f"{report['config']} {report['size']}x{report['size']}, {report['frames']} frames, "
                        f"median of {report['runs']} runs; torch {env['torch']}, {env['threads']} threads",
                  caption=f"{env['cpu']}: AVX-512 {'yes' if env['avx512f'] else 'no'}, "
                          f"AVX512-BF16 {'yes' if env['avx512_bf16'] else 'no'}, AMX {'yes' if env['amx'] else 'no'}")
    for col in ("path", "frames/s", "x ref", "peak RSS", "max |diff|", "PSNR vs ref", "PSNR vs exact",
                "kp / dense / gen ms", "what runs"):
        table.add_column(col, justify="left" if col in ("path", "what runs") else "right")
    for row in report["rows"]:
        if "error" in row:
            table.add_row(row["name"], "[red]failed[/]", "", "", "", "", "", "", row["error"])
            continue
        st = row["stages"]

        def num(key, fmt):
            return format(row[key], fmt) if key in row else "-"
        table.add_row(row["name"], f"{row['fps']:.2f}", num("speedup", ".2f"), f"{row['peak_rss_mb']:.0f} MB",
                      num("max_abs_vs_reference", ".1e"), num("psnr_vs_reference", ".1f"), num("psnr_vs_exact", ".1f"),
                      f"{st['keypoints']*1e3:.0f} / {st['dense motion']*1e3:.0f} / {st['generator']*1e3:.0f}",
                      row["path"])
    return table
