"""Hypothesis strategies shared by the reader fuzz tests (tests/test_fuzz_*.py)."""

from __future__ import annotations

import re

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
# YAML texts that have broken YAML readers before: syntax, aliases, nesting, keys, control bytes.
HOSTILE_YAML = [
    ("version: 1\nslos: [\n  - a: b\n", ":3"),   # unclosed flow sequence
    ("a: &x [*x]\n", ""),                         # recursive alias
    ("[" * 1500 + "]" * 1500, ""),                # nesting deeper than the recursion limit
    ("? [a, b]\n: c\n", ":1"),                    # unhashable key
    ("a: 1\nb: \x00\n", ":2"),                    # a control character (a reader error, no mark)
]


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
