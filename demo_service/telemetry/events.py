"""The event log: one JSON line per lifecycle or audit event, safe with many writers.

Every line is written with a single ``os.write`` to a file descriptor opened with
``O_APPEND``, so lines from several gunicorn workers never interleave or tear, and
nothing sits in a user-space buffer (flushed per event). Rotation by size happens
under an ``fcntl.flock`` on a lock file next to the log: the first writer that sees
the file past the limit renames ``events.jsonl`` -> ``events.jsonl.1`` (shifting older
ones), the others notice the inode change and reopen. Readers read
``events.jsonl*`` (see ``event_files``).

Writes are all-or-nothing: a full disk can make ``os.write`` store only part of a line
(a short write). Before the error is raised the fragment is overwritten in place with
spaces and a newline (a blank line, which readers skip), so the next event never lands on
it and the log stays whole lines; the event counts as lost (``write_line`` raises
``OSError``). Blanking needs no lock against other writers (it touches only the fragment's
own bytes, and appends go past them), so an append is one system call: truncating the
fragment away instead would need every writer to hold a shared lock around its append
(two more system calls per event, each a hand-over of the GIL between a worker's threads).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from contract.events import event_time_text

__all__ = [
    "EVENTS_FILE",
    "EventFile",
    "UserHasher",
    "event_timestamp",
    "event_files",
    "read_events",
]

EVENTS_FILE = "events.jsonl"
USER_KEY_FILE = "user-hash.key"


def event_timestamp(epoch: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-01-01T12:00:00.123Z`` (contract.events.format_time)."""
    return event_time_text(time.time() if epoch is None else epoch)


class EventFile:
    """Append-only JSONL file shared by processes; ``write_line`` is one ``os.write``."""

    REOPEN_CHECK_S = 1.0

    def __init__(self, path: str | Path, max_bytes: int, backup_count: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.max_bytes = max_bytes
        self.backup_count = max(1, backup_count)
        self._lock = threading.Lock()
        self._fd = self._open()
        self._next_inode_check = time.monotonic() + self.REOPEN_CHECK_S
        # The size is checked (an fstat) once this writer has appended a 64th of the limit (at most 64 KiB)
        # since the last check, not after every line: the log may pass the limit by that much per writer.
        self._check_size_every = max(1, min(max_bytes // 64, 64 * 1024))
        self._unchecked_bytes = 0

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @property
    def fd(self) -> int:
        return self._fd

    def write_line(self, line: bytes) -> None:
        """Append one complete line (must end with ``\\n``) or nothing; raises OSError on failure."""
        with self._lock:
            now = time.monotonic()
            if now >= self._next_inode_check:
                self._next_inode_check = now + self.REOPEN_CHECK_S
                self._reopen_if_rotated()
            written = os.write(self._fd, line)  # an OSError here wrote nothing
            if written != len(line):
                end = os.lseek(self._fd, 0, os.SEEK_CUR)  # where this write ended, whatever was appended since
                self._blank(end - written, end)
                raise OSError(errno.ENOSPC, f"No space left on device (short write to {self.path}: "
                                            f"{written} of {len(line)} bytes, blanked)")
            self._unchecked_bytes += written
            if self._unchecked_bytes >= self._check_size_every:
                self._unchecked_bytes = 0
                if os.fstat(self._fd).st_size >= self.max_bytes:
                    self._rotate()

    def _blank(self, start: int, end: int) -> None:
        """Overwrite the fragment [start, end) of a short write with spaces and a newline: a blank line.

        Through /proc, the file this descriptor writes to (even if rotated away meanwhile), without
        O_APPEND; the fragment's blocks are allocated already, so this needs no room on the disk."""
        fd = os.open(f"/proc/self/fd/{self._fd}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, b" " * (end - start - 1) + b"\n", start)
        finally:
            os.close(fd)

    def _reopen_if_rotated(self) -> None:
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(self._fd).st_ino:
            old, self._fd = self._fd, self._open()
            os.close(old)

    def _rotate(self) -> None:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                st = os.stat(self.path)
                # Another process may have rotated already; only the file we write to, past the limit, rotates.
                if st.st_ino == os.fstat(self._fd).st_ino and st.st_size >= self.max_bytes:
                    for i in range(self.backup_count - 1, 0, -1):
                        src = self.path.with_name(f"{self.path.name}.{i}")
                        if src.exists():
                            os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
                    os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            except FileNotFoundError:
                pass
            finally:
                old, self._fd = self._fd, self._open()
                os.close(old)
                fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


class UserHasher:
    """``u_`` + 16 hex of HMAC-SHA256(key, raw user id); the key lives in the data dir, made once."""

    def __init__(self, data_dir: str | Path):
        self.key = self._load_or_create_key(Path(data_dir) / USER_KEY_FILE)

    @staticmethod
    def _load_or_create_key(path: Path) -> bytes:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):  # the creator may still be writing it
                key = path.read_bytes()
                if len(key) == 32:
                    return key
                time.sleep(0.01)
            raise RuntimeError(f"{path}: user-hash key is not 32 bytes")
        key = secrets.token_bytes(32)
        os.write(fd, key)
        os.close(fd)
        return key

    def __call__(self, raw_user_id: str) -> str:
        return "u_" + hmac.new(self.key, raw_user_id.encode(), hashlib.sha256).hexdigest()[:16]


def event_files(events_dir: str | Path) -> list[Path]:
    """The event files of a directory, oldest first (events.jsonl.N ... .1, events.jsonl)."""
    d = Path(events_dir)
    rotated = sorted(d.glob(EVENTS_FILE + ".*[0-9]"), key=lambda p: -int(p.suffix[1:]))
    current = d / EVENTS_FILE
    return rotated + ([current] if current.exists() else [])


def read_events(events_dir: str | Path, predicate: Callable[[dict], bool] | None = None) -> list[dict]:
    """All events of a directory in file order (tests and small tools; the toolkit reads with DuckDB)."""
    out = []
    for path in event_files(events_dir):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    event = json.loads(line)
                    if predicate is None or predicate(event):
                        out.append(event)
    return out


def iter_lines(events_dir: str | Path) -> Iterator[bytes]:
    for path in event_files(events_dir):
        with open(path, "rb") as f:
            yield from f
