"""Fuzz the event JSONL readers (toolkit.events): whatever the bytes, the toolkit ends
with counts and problems naming file and line, or EventsError naming them — never another
exception. A torn last line (a writer killed mid-line) is reported, never fatal, and no
other line is lost."""

from __future__ import annotations

import json
import re

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from hypothesis import settings

from fuzz_support import FUZZ
from contract.events import event_schema
from toolkit.events import EventsError, connect, load_events, validate_files

VALID_EVENT = {
    "schema_version": 1, "ts": "2026-01-05T10:30:00.123Z", "event": "upload_started",
    "request_id": "req-0123456789", "upload_id": "up_" + "a" * 24, "trace_id": "b" * 32, "span_id": "c" * 16,
    "service": "publish-api", "service_version": "1.4.0", "user_id": "u_" + "d" * 16, "app_version": "5.4.0",
    "region": "eu-west", "network_type": "wifi", "media_size_bucket": "small",
    "flags": {"release": "stable", "transcode_mode": "sync"}, "synthetic": True, "chunk_count": 2,
    "media_size_bytes": 1000,
}
# Each example is a DuckDB scan of a file: fewer examples than the pure validators get.
READER_FUZZ = settings(FUZZ, max_examples=60)
# One DuckDB connection for all examples (connecting costs more than a small scan).
CON = connect()
VALIDATOR = jsonschema.Draft202012Validator(event_schema())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)


@st.composite
def event_lines(draw) -> bytes:
    """One line's bytes (without its newline): valid, a field broken, or not an event at all."""
    kind = draw(st.sampled_from(["valid", "field", "drop", "garbage", "truncated", "json", "deep", "bytes", "blank"]))
    if kind in ("valid", "field", "drop"):
        event = dict(VALID_EVENT)
        event["request_id"] = "req-" + draw(st.text("0123456789abcdef", min_size=8, max_size=12))
        if kind == "field":
            event[draw(st.sampled_from(sorted(VALID_EVENT)))] = draw(json_values)
        elif kind == "drop":
            event.pop(draw(st.sampled_from(sorted(VALID_EVENT))))
        return json.dumps(event).encode()
    if kind == "garbage":
        return draw(st.text(max_size=40)).replace("\n", " ").encode("utf-8", "surrogatepass")
    if kind == "truncated":
        text = json.dumps(VALID_EVENT).encode()
        return text[: draw(st.integers(1, len(text) - 1))]
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([50, 1500]))
        return b"[" * depth + b"]" * depth
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    return b""


@st.composite
def event_files(draw) -> tuple[bytes, bool]:
    lines = draw(st.lists(event_lines(), min_size=1, max_size=12))
    torn_tail = draw(st.booleans())
    body = b"\n".join(lines) + (b"" if torn_tail else b"\n")
    return body, torn_tail


def _is_valid(line: bytes) -> bool:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return VALIDATOR.is_valid(obj)


def _nonblank(lines: list[bytes]) -> int:
    """Lines holding anything but what the readers skip as blank (a leading byte-order mark included)."""
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines = [lines[0][3:]] + lines[1:]
    return sum(1 for ln in lines if ln.strip(b" \t\r\x0b\x0c"))


def _problem_line(text: str, path: str) -> int:
    m = re.match(rf"^{re.escape(path)}:(\d+): \S", text)
    assert m, f"does not name {path}:<line>: {text!r}"
    return int(m.group(1))


@READER_FUZZ
@given(event_files())
def test_load_events_counts_every_line_or_names_it(tmp_path_factory, content):
    body, _ = content
    path = tmp_path_factory.mktemp("ev") / "events.jsonl"
    path.write_bytes(body)
    lines = body.split(b"\n")
    if body.endswith(b"\n"):
        lines = lines[:-1]
    try:
        # No limit on the skipped share: the property is about counting and naming every line.
        es = load_events([path], con=CON, max_skipped_share=None)
    except EventsError as e:  # only a whole-file problem may stop the lenient reader, and it names the file
        assert str(e).startswith(str(path)) or str(path) in str(e), str(e)
        return
    for p in es.problems:
        n = _problem_line(str(p), str(path))
        # A named line was skipped: invalid per the schema, or a ts the schema's pattern admits but that
        # is no time (e.g. 2026-02-30).
        assert not _is_valid(lines[n - 1]) or p.message.startswith("ts not"), (n, lines[n - 1], str(p))
    assert sum(n for n, _ in es.skipped_by_reason.values()) == es.skipped
    assert len(es.problems) == min(es.skipped, 20)  # the naming pass finds exactly the lines the scan skipped
    for p in es.torn:
        assert _problem_line(str(p), str(path)) == len(lines)
    nonblank = _nonblank(lines)
    assert es.events + es.duplicates + es.skipped + len(es.torn) == nonblank, (es.summary(), nonblank)


@READER_FUZZ
@given(event_files())
def test_strict_load_names_the_first_bad_line(tmp_path_factory, content):
    body, _ = content
    path = tmp_path_factory.mktemp("ev") / "events.jsonl"
    path.write_bytes(body)
    try:
        load_events([path], strict=True, con=CON)
    except EventsError as e:
        _problem_line(str(e), str(path))


@READER_FUZZ
@given(event_files())
def test_validate_files_accounts_for_every_line(tmp_path_factory, content):
    body, torn_tail = content
    path = tmp_path_factory.mktemp("ev") / "events.jsonl"
    path.write_bytes(body)
    report = validate_files([path])
    lines = [ln for ln in (body.split(b"\n")[:-1] if body.endswith(b"\n") else body.split(b"\n"))]
    nonblank = _nonblank(lines)
    assert report.lines + len(report.torn) == nonblank
    assert report.valid + report.invalid == report.lines
    for p in report.problems + report.torn:
        n = _problem_line(str(p), str(path))
        assert not _is_valid(lines[n - 1])
    # Only the very last line can be torn, and only when the file does not end in a newline.
    assert len(report.torn) <= (1 if torn_tail else 0)


def test_a_torn_last_line_loses_nothing_else(tmp_path):
    good = [json.dumps({**VALID_EVENT, "request_id": f"req-00000000{i}"}) for i in range(3)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(("\n".join(good) + "\n").encode() + good[0].encode()[:37])
    es = load_events([path], strict=True)
    assert (es.events, es.skipped, len(es.torn)) == (3, 0, 1)
    assert str(es.torn[0]).startswith(f"{path}:4: torn final line")
