"""`fomm-doctor animate` (placeholder until its issue lands)."""
import typer


def animate() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor animate is not available in this build yet.", err=True)
    raise typer.Exit(2)
