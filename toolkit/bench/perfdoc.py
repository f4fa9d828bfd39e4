"""docs/performance.md is shared: each benchmark replaces only its own ``## <topic>`` section."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["replace_section", "check_target", "TargetError"]

_TITLE = "# Performance\n\nFigures measured by `obslab bench ...`; each section says how it was measured.\n"


def replace_section(path: str | Path, heading: str, body: str) -> None:
    """Replace the section ``## heading`` (up to the next ``## `` heading) or append it; keep the rest."""
    p = Path(path)
    text = p.read_text() if p.exists() else _TITLE
    section = f"## {heading}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
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
