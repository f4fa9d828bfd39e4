"""Hypothesis strategies and hostile files shared by the reader tests (tests/test_fuzz_*.py and the
YAML readers of the judge config and rollout plan)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Scalars a YAML or JSON author can write, including the ones that break naive numeric code.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["5m", "1h30m", "0s", "-5m", "1e400s", "9" * 400 + "s", "30d", ".inf", "nan", "", " "]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.integers(), st.none(), st.booleans()), children, max_size=4),
    ),
    max_leaves=25,
)


class _Directory:
    """Stands in HOSTILE_FILES for a directory where the reader expects a file."""

    def __repr__(self) -> str:
        return "a directory"


A_DIRECTORY = _Directory()


class _Fifo:
    """Stands in HOSTILE_FILES for a FIFO (named pipe) with no writer: a reader that opens it blocks."""

    def __repr__(self) -> str:
        return "a FIFO"


A_FIFO = _Fifo()

# "Billion laughs": nine levels of nine aliases, 9**9 strings once expanded, in about 330 bytes.
# safe_load builds it cheaply (shared references) but anything that walks or repr()s it never ends.
ALIAS_BOMB = "version: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]" + "".join(
    f",&{n} [" + ",".join([f"*{prev}"] * 9) + "]" for prev, n in zip("abcdefgh", "bcdefghi")) + "]\n"

# Files that have broken YAML readers before: syntax, aliases, nesting, keys, control characters,
# bytes that are not UTF-8, a directory or a FIFO in the file's place. Each is (content, where, what): the error
# starts with the path and ``where`` ("" for the file as a whole, ":N" for line N) and says ``what``
# ("" for whatever the reader finds wrong with the document).
HOSTILE_FILES = [
    pytest.param("version: 1\nslos: [\n  - a: b\n", ":3", "not valid YAML", id="unclosed-flow-sequence"),
    pytest.param("a: &x [*x]\n", ":1", "anchors (&x) are not allowed", id="recursive-alias"),  # a list in itself
    pytest.param(ALIAS_BOMB, ":1", "anchors (&a) are not allowed", id="alias-bomb"),
    pytest.param("a: *x\n", ":1", "aliases (*x) are not allowed", id="undefined-alias"),
    pytest.param("[" * 1500 + "]" * 1500, "", "not valid YAML", id="nested-past-recursion-limit"),
    pytest.param("[" * 100_000, "", "not valid YAML", id="nested-100000-deep-unclosed"),
    pytest.param("? [a, b]\n: c\n", ":1", "not valid YAML", id="unhashable-key"),
    # a control character is a YAML reader error: a position, no mark
    pytest.param("a: 1\nb: \x00\n", ":2", "not valid YAML", id="control-character"),
    pytest.param(b"a: 1\nb: \xff\xfe\n", ":2", "not valid UTF-8", id="not-utf8"),
    pytest.param(A_DIRECTORY, "", "not a regular file (a directory)", id="directory"),
    pytest.param(A_FIFO, "", "not a regular file (a FIFO)", id="fifo"),
]
# The ones that escaped the judge config and rollout plan readers as other exceptions (a traceback in
# the CLI) before they read through load_yaml_file: what a CLI test of a YAML option feeds the command.
CLI_HOSTILE_FILES = [p for p in HOSTILE_FILES
                     if p.id in ("not-utf8", "control-character", "nested-100000-deep-unclosed", "directory",
                                 "alias-bomb", "fifo")]


def paths(node, prefix=()):
    """Every path (tuple of keys and indexes) to a value inside a nested dict/list document."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def field_path(path) -> str:
    """The readers' spelling of a path: slos[1].threshold, alerting.windows[0].long."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def set_at(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def delete_at(doc, path):
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


def assert_clear_error(message: str, source: str) -> None:
    """``<source>:<line>: what`` or ``<source>: <field.path>: what``, on one line."""
    assert message.startswith(f"{source}:"), message
    rest = message[len(source) + 1:]
    assert re.match(r"(\d+: \S| \S.*?: \S)", rest), message
    assert "\n" not in message, message


def write_hostile_file(path: Path, content: str | bytes | _Directory) -> Path:
    """Put one HOSTILE_FILES content at ``path``."""
    if content is A_DIRECTORY:
        path.mkdir()
    elif content is A_FIFO:
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def assert_hostile_file_is_reader_error(load: Callable[[Path], Any], error: type[Exception], path: Path,
                                        content: str | bytes | _Directory, where: str, what: str) -> None:
    """``load`` refuses a hostile file with ``error``: one line, starting ``<path><where>:``, saying ``what``."""
    write_hostile_file(path, content)
    with pytest.raises(error) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}{where}:") and what in message, message
    assert "\n" not in message, message


def assert_one_line_cli_error(proc, *names: str) -> None:
    """A finished ``obslab`` run failed as a user error: exit 2, one line on stderr naming ``names``."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for name in names:
        assert name in proc.stderr, (name, proc.stderr)
