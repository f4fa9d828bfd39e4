"""docs/performance.md is shared: each benchmark owns one ``## <heading>`` section and replaces only it.

The one writer of that file: every ``obslab bench`` command and ``obslab lab bench`` call
``write_section`` with a section that starts with its own ``## heading`` line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["write_section", "PerfDocError", "check_target", "TargetError"]

TITLE = "# Performance\n\nFigures measured by `obslab bench ...`; each section says how it was measured.\n"


class PerfDocError(ValueError):
    """A section that does not start with its ``## heading`` line."""


def write_section(path: str | Path, section: str) -> None:
    """Replace the section whose heading is ``section``'s first line (up to the next ``## ``), or append it."""
    first, _, _ = section.lstrip("\n").partition("\n")
    if not first.startswith("## ") or not first[3:].strip():
        raise PerfDocError(f"a performance section must start with a '## heading' line, got {first[:60]!r}")
    heading = first[3:].strip()
    p = Path(path)
    text = p.read_text() if p.exists() else TITLE
    body = section.strip("\n") + "\n"
    pattern = re.compile(rf"^## {re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + body
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


class TargetError(ValueError):
    """A benchmark's output file cannot be written; names the option and the path."""


def check_target(path: Path, option: str) -> None:
    """Raise TargetError unless ``path`` can take a section: a benchmark checks this before its run,
    not after minutes of measuring (``--write ''`` used to end a whole soak with a traceback)."""
    if path.is_dir():  # '' arrives as '.'
        raise TargetError(f"{option} {path}: a directory; give a markdown file to write the section to")
    if path.exists():
        if not path.is_file():
            raise TargetError(f"{option} {path}: not a regular file")
        if not os.access(path, os.W_OK):
            raise TargetError(f"{option} {path}: not writable")
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise TargetError(f"{option} {path}: cannot create it ({ancestor} is not a writable directory)")
