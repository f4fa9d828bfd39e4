"""Shared CLI plumbing: the Typer app and the user-error convention."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

__all__ = ["app", "bench_app", "console", "err_console", "UserError", "user_errors", "fail"]

app = typer.Typer(
    name="obslab",
    help="obslab: an observability lab. Run a service, drive load, and turn telemetry into SLIs, budgets and stories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# `obslab bench ...`: each benchmark module adds its command here.
bench_app = typer.Typer(help="Benchmarks: figures measured side by side in one run, written to docs/performance.md.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A problem the user can fix (bad option, missing file, unreachable host): one line, exit 2."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = 2) -> "typer.Exit":
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(exit_code)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn UserError and the given library errors (ValueError subclasses, OSError...) into one line."""
    try:
        yield
    except UserError as e:
        raise fail(str(e), e.exit_code) from None
    except kinds as e:  # type: ignore[misc]
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


@app.callback()
def _root() -> None:
    """obslab: an observability lab. Run a service, drive load, and turn telemetry into SLIs, budgets and stories."""
