"""`fomm-doctor demo` (placeholder until its issue lands)."""
import typer


def demo() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor demo is not available in this build yet.", err=True)
    raise typer.Exit(2)
