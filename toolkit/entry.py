"""The `obslab` console script: the CLI, or one clear line when the toolkit's extra is not installed.

The package's base install is the service and the load generator (what the container image needs);
the CLI needs the `toolkit` extra (DuckDB, scipy, typer, ...).
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from toolkit.cli import main as cli_main
    except ModuleNotFoundError as e:
        print(f"obslab: the toolkit needs {e.name!r}, which is not installed; "
              "install the toolkit extra: pip install 'obslab[toolkit]'", file=sys.stderr)
        raise SystemExit(2) from None
    cli_main()
