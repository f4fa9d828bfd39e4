"""``obslab version``."""

from toolkit import __version__
from toolkit.cli.base import app, console


@app.command()
def version() -> None:
    """Print the obslab version."""
    console.print(f"obslab {__version__}")
