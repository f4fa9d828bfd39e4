"""docs/performance.md is shared: each benchmark replaces only its own ``## <topic>`` section."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["replace_section"]

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
