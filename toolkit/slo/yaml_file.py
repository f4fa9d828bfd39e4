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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract.regular_file import NotRegularFileError, read_regular

__all__ = ["MAX_YAML_BYTES", "load_yaml_file", "Located", "load_yaml_file_located"]

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
    return _parse(path, _read_text(path, error), error, located=False)


@dataclass(frozen=True)
class Located:
    """A parsed document with the line of every part, for errors that point at a line.

    ``lines`` maps a path of keys and indexes (mapping keys as written, as strings; list
    indexes as ints) to the 1-based line where that part starts (a mapping entry: its key's
    line); ``()`` is the document. ``duplicate_keys`` holds (path, line) of every key written a
    second time in one mapping (YAML keeps the last silently; a spec author rarely means it)."""

    data: Any
    lines: dict[tuple, int]
    duplicate_keys: tuple[tuple[tuple, int], ...] = ()

    def line(self, path: tuple) -> int:
        """The line of ``path``, or of its nearest ancestor that has one (a missing field: its parent)."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def load_yaml_file_located(path: Path, error: type[Exception]) -> Located:
    """``load_yaml_file`` plus the line of every key and item (same guards, same errors)."""
    return _parse(path, _read_text(path, error), error, located=True)


def _read_text(path: Path, error: type[Exception]) -> str:
    try:
        raw = read_regular(path, limit=MAX_YAML_BYTES)
    except NotRegularFileError as e:
        raise error(str(e)) from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise error(f"{path}: larger than {MAX_YAML_BYTES // 1024} KiB: not a spec file") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None


def _parse(path: Path, text: str, error: type[Exception], *, located: bool) -> Any:
    try:
        if not located:
            return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass: safe
        loader = _NoAliasLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        return Located(data, *_node_lines(node))
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


def _node_lines(root: "yaml.Node | None") -> tuple[dict[tuple, int], tuple[tuple[tuple, int], ...]]:
    """Line of every part of a composed document, walked without recursion (a deep document must not
    cost the stack), and the keys written twice in one mapping."""
    lines: dict[tuple, int] = {(): 1 if root is None else root.start_mark.line + 1}
    duplicates: list[tuple[tuple, int]] = []
    todo = [((), root)] if root is not None else []
    while todo:
        path, node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            last: dict[str, tuple] = {}  # YAML keeps a repeated key's last value: so do the lines
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                if key in last:
                    duplicates.append((path + (key,), key_node.start_mark.line + 1))
                last[key] = (key_node, value_node)
            for key, (key_node, value_node) in last.items():
                lines[path + (key,)] = key_node.start_mark.line + 1
                todo.append((path + (key,), value_node))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                todo.append((path + (i,), item))
    return lines, tuple(sorted(duplicates, key=lambda d: d[1]))
