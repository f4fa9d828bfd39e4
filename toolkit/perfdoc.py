"""docs/performance.md is shared: each benchmark owns one ``## <topic>`` section and replaces only it."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["replace_section"]


def replace_section(path: Path, topic: str, section: str) -> None:
    """Replace the ``## topic`` section (up to the next ``## `` heading) or append it; keep the rest."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Performance\n"
    body = section.rstrip("\n") + "\n"
    pattern = re.compile(rf"^## {re.escape(topic)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
