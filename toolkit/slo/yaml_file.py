"""Read one YAML file for a spec reader: every failure becomes the reader's own error,
naming the file and, where YAML knows it, the line (``drill.yaml:3: not valid YAML: ...``).

Shared by the SLO spec, drill, judge config and rollout plan readers so that undecodable
bytes, control characters, nesting deeper than Python's recursion limit or an unreadable
path never escape as another exception (which the CLI would show as a traceback).

Hostile files are refused before they can cost anything: a FIFO or device (it would block or
never end), a file over ``MAX_YAML_BYTES``, and YAML anchors and aliases (``&a``/``*a``). No
spec needs aliases, and a few hundred bytes of nested aliases ("billion laughs") expand into
billions of values as soon as anything walks or formats them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from contract.regular_file import NotRegularFileError, read_regular

__all__ = ["MAX_YAML_BYTES", "load_yaml_file"]

# Specs are a few kilobytes; this leaves room for generated ones and bounds what one read costs.
MAX_YAML_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases where it meets them (with their line)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in this file", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, f"YAML anchors (&{event.anchor}) are not allowed in this file", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml_file(path: Path, error: type[Exception]) -> Any:
    """The parsed document of ``path``; raise ``error("<path>[:line]: what")`` otherwise."""
    try:
        raw = read_regular(path, limit=MAX_YAML_BYTES)
    except NotRegularFileError as e:
        raise error(str(e)) from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise error(f"{path}: larger than {MAX_YAML_BYTES // 1024} KiB: not a spec file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass: safe
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
