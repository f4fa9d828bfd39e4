"""``obslab story``: STAR impact statements, and the learner's own drill story checked.

- ``obslab story RESULT.json`` (= ``obslab story from-compare RESULT.json``): the statement written from a
  compare, rollout, breakdown or drill result;
- ``obslab story template RUN``: a skeleton for the learner's own story of a finished drill run;
- ``obslab story check STORY.md --run RUN``: every number and metric of that story checked against
  what the engine measured for the run (its report), with a rubric score.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from toolkit.cli.base import UserError, app, console, user_errors
from contract.regular_file import NotRegularFileError, read_regular


class _DefaultToFromCompare(TyperGroup):
    """``obslab story X.json`` keeps working: an argument that is no subcommand goes to ``from-compare``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["from-compare", *args]
        return super().parse_args(ctx, args)


story_app = typer.Typer(cls=_DefaultToFromCompare, no_args_is_help=True,
                        help="Impact stories: `obslab story RESULT.json` writes one from a result; `template` and "
                             "`check` are for your own story of a drill.")
app.add_typer(story_app, name="story")

DataDir = typer.Option(Path(".obslab"), "--data-dir", help="The lab's data directory (its drills/ holds the runs).")


def _read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else read_regular(path).decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except NotRegularFileError as e:  # a FIFO would block forever
        raise UserError(str(e)) from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None


@story_app.command("from-compare")
def from_compare(
    result: Path = typer.Argument(..., help="JSON written by compare/rollout/breakdown --format json ('-' = stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the markdown here instead of stdout."),
) -> None:
    """Write a STAR-shaped impact story with every number defined (the default: `obslab story RESULT.json`)."""
    from toolkit.analysis.story import StoryError, write_story

    with user_errors(StoryError, OSError):
        text = _read_text(result)
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


@story_app.command("template")
def template(
    run: str = typer.Argument("current", help="The drill run: its id (a directory under <data-dir>/drills), "
                                              "its path, or `current`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the skeleton here instead of stdout."),
    data_dir: Path = DataDir,
) -> None:
    """A skeleton for your own story of a finished drill: prompts only, no figures."""
    from toolkit.drills.story_run import StoryRunError, story_template_for

    with user_errors(StoryRunError, OSError):
        md = story_template_for(data_dir, run)
        if output:
            if output.exists():
                raise UserError(f"{output} exists; not overwriting your story (choose another -o)")
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(md)
            console.print(f"story skeleton written to {output}; then `obslab story check {output} --run {run}`",
                          highlight=False)
        else:
            sys.stdout.write(md)


@story_app.command("check")
def check(
    story: Path = typer.Argument(..., help="Your story (markdown, as `obslab story template` laid it out)."),
    run: str = typer.Option("current", "--run", help="The drill run the story is about (id, path or `current`)."),
    data_dir: Path = DataDir,
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Check your story against what the engine measured for the run: numbers, definitions, rubric score."""
    from toolkit.analysis.story_check import StoryFormatError
    from toolkit.drills.story_run import StoryRunError, check_story_for

    if fmt not in ("text", "json"):
        raise UserError(f"--format: expected text or json, got {fmt!r}")
    with user_errors(StoryRunError, StoryFormatError, OSError):
        text = _read_text(story)
        result = check_story_for(data_dir, run, text)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    from toolkit.analysis.story_check import render_feedback

    sys.stdout.write(render_feedback(result))
