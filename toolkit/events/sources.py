"""Where events come from: files, directories and globs resolved into ``Source``s."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Iterable

from contract.regular_file import kind_of
from toolkit.events import stored_fold
from toolkit.events.model import EventsError, Source

_JSONL_NAME = re.compile(r"\.(jsonl|ndjson|json)(\.\d+)?(\.gz)?$")


def format_of(path: str) -> str | None:
    if path.endswith(".parquet"):
        return "parquet"
    if _JSONL_NAME.search(path):
        return "jsonl"
    return None


def resolve_paths(paths: Iterable[str | Path]) -> tuple[Source, ...]:
    """Expand files, directories and globs into event sources; raise EventsError if nothing matches."""
    out: list[Source] = []
    seen: set[str] = set()
    for raw in paths:
        p = str(raw)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise EventsError(f"{p}: no file matches this pattern")
            candidates = [m for m in matches if os.path.isfile(m)]
        elif os.path.isdir(p):
            candidates = sorted(
                str(f) for f in Path(p).rglob("*")
                if f.is_file() and format_of(str(f)) is not None and not stored_fold.is_fold_path(f))
            if not candidates:
                raise EventsError(f"{p}: directory holds no event files (*.jsonl, *.jsonl.N, *.jsonl.gz, *.parquet)")
        elif os.path.isfile(p):
            if stored_fold.is_fold_path(p):
                raise EventsError(f"{p}: a stored fold written by obslab events compact, not events; "
                                  "pass the compacted directory instead")
            candidates = [p]
        elif os.path.exists(p):  # a FIFO would block its reader, a device may never end
            raise EventsError(f"{p}: not a regular file ({kind_of(os.stat(p).st_mode)})")
        else:
            raise EventsError(f"{p}: no such file or directory")
        for c in candidates:
            if stored_fold.is_fold_path(c) and c != p:
                continue  # compact's stored folds live beside the events they summarise
            fmt = format_of(c) or "jsonl"
            if c not in seen:
                seen.add(c)
                out.append(Source(c, fmt))
    # Rotated files hold older events; order does not change results but keeps reports stable.
    return tuple(out)
