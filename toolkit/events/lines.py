"""Event files byte by byte: lines with bounded memory, gzip archives (truncated ones salvaged),
torn final lines (a writer that crashed mid-line)."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from toolkit.events.model import MAX_LINE_BYTES, EventsError, Problem, Source

# What DuckDB's JSON reader skips as blank (JSON's whitespace plus vertical tab and form feed).
JSON_WHITESPACE = " \t\r\x0b\x0c"


def not_json(text: str) -> bool:
    try:
        json.loads(text)
        return False
    except (ValueError, RecursionError):
        return True


def gzip_chunks(path: str) -> Iterator[bytes]:
    """Decompressed bytes of a (possibly multi-member, possibly truncated) gzip file, as far as they go.

    gzip.open raises EOFError on a cut stream and drops what it had decompressed; zlib keeps it.
    """
    d = zlib.decompressobj(wbits=31)
    with open(path, "rb") as f:
        while raw := f.read(1 << 20):
            while raw:
                out = d.decompress(raw)
                if out:
                    yield out
                if d.eof:
                    raw = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                else:
                    raw = b""
    tail = d.flush()
    if tail:
        yield tail


def _gzip_is_truncated(path: str) -> bool:
    """True when the last gzip member ends before its trailer (a writer stopped mid-stream)."""
    d = zlib.decompressobj(wbits=31)
    open_member = False
    with open(path, "rb") as f:
        while raw := f.read(1 << 20):
            while raw:
                d.decompress(raw)
                open_member = True
                if d.eof:
                    raw = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    open_member = False
                else:
                    raw = b""
    return open_member


def salvage_truncated_gzip(sources: Sequence[Source], tmp: Path) -> tuple[tuple[Source, ...], tuple[Problem, ...]]:
    """Copy the complete lines of each truncated .gz into a plain file; its cut last line is torn."""
    out, torn = [], []
    for n, s in enumerate(sources):
        if not s.path.endswith(".gz"):
            out.append(s)
            continue
        try:
            if not _gzip_is_truncated(s.path):
                out.append(s)
                continue
            copy = tmp / f"{n}.jsonl"
            lineno, pending = 0, b""
            with open(copy, "wb") as w:
                for chunk in gzip_chunks(s.path):
                    data = pending + chunk
                    cut = data.rfind(b"\n") + 1
                    w.write(data[:cut])
                    lineno += data.count(b"\n", 0, cut)
                    pending = data[cut:]
        except (OSError, zlib.error) as e:
            raise EventsError(f"{s.path}: cannot read: {e}") from None
        if pending:
            torn.append(Problem(s.path, lineno + 1, f"torn final line of a truncated gzip archive "
                                                     f"({len(pending)} bytes): ignored"))
        out.append(Source(str(copy), "jsonl"))
    return tuple(out), tuple(torn)


def torn_final_line(path: str) -> Problem | None:
    """A plain JSONL file whose last line has no newline and is not JSON: a writer crashed mid-line."""
    if path.endswith(".gz"):
        return None  # rotated archives are written whole; the validation pass checks them
    try:
        size = os.path.getsize(path)
        if size == 0:
            return None
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
            # Read back to the previous newline.
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
    except OSError as e:
        raise EventsError(f"{path}: cannot read: {e.strerror or e}") from None
    last = tail.rsplit(b"\n", 1)[-1]
    if not last.strip(JSON_WHITESPACE.encode()):
        return None  # a blank tail is not an event, torn or otherwise
    try:
        json.loads(last)
        return None  # complete object, just no newline at the end
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        pass
    line = _count_newlines(path) + 1
    return Problem(path, line, f"torn final line ({len(last)} bytes, no newline, not JSON): ignored")


def _count_newlines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


@dataclass(frozen=True)
class LongLine:
    """A line longer than MAX_LINE_BYTES: skipped unread, only its size is known."""
    size: int
    ended: bool  # it had a newline (False: it ran to the end of the file)


def _plain_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def iter_lines(path: str) -> Iterator[str | LongLine]:
    """Lines of a plain or gzip file, newline kept; a cut final line comes without one.

    Read in 1 MiB chunks: memory stays bounded by MAX_LINE_BYTES however long a line is (a file
    without a single newline included); a longer line comes as a LongLine, not as text.
    """
    chunks = gzip_chunks(path) if path.endswith(".gz") else _plain_chunks(path)
    pending = b""
    skipped = 0  # bytes of an over-long line seen so far; 0 when not inside one
    first = True
    for chunk in chunks:
        if first:
            # A byte-order mark at the start is not part of line 1 (DuckDB skips it too).
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            start = end + 1
            if skipped or len(pending) + len(piece) > MAX_LINE_BYTES:
                yield LongLine(skipped + len(pending) + len(piece), ended=True)
                pending, skipped = b"", 0
            else:
                yield (pending + piece).decode("utf-8", errors="replace") + "\n"
                pending = b""
        rest = chunk[start:]
        if skipped:
            skipped += len(rest)
        elif len(pending) + len(rest) > MAX_LINE_BYTES:
            pending, skipped = b"", len(pending) + len(rest)
        else:
            pending += rest
    if skipped:
        yield LongLine(skipped, ended=False)
    elif pending:
        yield pending.decode("utf-8", errors="replace")
