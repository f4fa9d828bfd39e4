"""``obslab story``: a STAR impact statement (markdown) from a compare, rollout, breakdown or drill result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from toolkit.cli.base import UserError, app, user_errors
from contract.regular_file import NotRegularFileError, read_regular


@app.command()
def story(
    result: Path = typer.Argument(..., help="JSON written by compare/rollout/breakdown --format json ('-' = stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the markdown here instead of stdout."),
) -> None:
    """Write a STAR-shaped impact story with every number defined."""
    from toolkit.analysis.story import StoryError, write_story

    with user_errors(StoryError, OSError):
        try:
            text = sys.stdin.read() if str(result) == "-" else read_regular(result).decode("utf-8")
        except FileNotFoundError:
            raise UserError(f"{result}: no such file") from None
        except NotRegularFileError as e:  # a FIFO would block forever
            raise UserError(str(e)) from None
        except UnicodeDecodeError as e:
            raise UserError(f"{result}: not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UserError(f"{result}: not JSON ({e})") from None
        md = write_story(data)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(md)
        else:
            sys.stdout.write(md)
