"""Shared options and output helpers of the analysis commands (compare, breakdown, rollout, story)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb

from toolkit.cli.base import UserError
from contract.durations import parse_duration

FORMATS = ("table", "json")
# Errors a user can cause in these commands: bad files, bad options, bad SQL in --where.
USER_ERRORS = (ValueError, OSError, duckdb.Error)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def load(paths: list[Path], abandon_after: str, until: str | None = None):
    from toolkit.analysis.compare import load_attempts

    rel, events = load_attempts(paths, abandon_after_s=parse_duration(abandon_after), until=until)
    return rel, events


def emit_json(data: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    else:
        sys.stdout.write(text)


def source_text(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)
