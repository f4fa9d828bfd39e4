"""Read one YAML file for a spec reader: every failure becomes the reader's own error,
naming the file and, where YAML knows it, the line (``drill.yaml:3: not valid YAML: ...``).

Shared by the SLO spec, drill, judge config and rollout plan readers so that undecodable
bytes, control characters, nesting deeper than Python's recursion limit or an unreadable
path never escape as another exception (which the CLI would show as a traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_yaml_file"]


def load_yaml_file(path: Path, error: type[Exception]) -> Any:
    """The parsed document of ``path``; raise ``error("<path>[:line]: what")`` otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f":{mark.line + 1}"
        elif isinstance(e, yaml.reader.ReaderError):  # a control character: a position, no mark
            where = f":{text.count(chr(10), 0, e.position) + 1}"
        else:
            where = ""
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise error(f"{path}{where}: not valid YAML: {' '.join(str(problem).split())}") from None
    except RecursionError:
        raise error(f"{path}: not valid YAML: nested too deeply") from None
