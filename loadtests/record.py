"""The client record: one JSON line per publish attempt, as the load generator saw it.

It is the client's side of the nothing-lost reconciliation (``obslab reconcile``), so it keeps
not just the outcome but every call of the attempt and the HTTP status it got back: status 0 is
a transport error (refused, reset, timed out) and -1 a call still in flight when the user was
stopped. From the calls the reconciler derives which events the server must, and may, have
written. The format is documented in docs/load.md.

Locust workers are separate processes (``--processes``, or workers in other containers sharing a
volume), so each process appends to its own file ``attempts-<host>-<pid>.jsonl`` in the record
directory, one ``os.write`` per line on an ``O_APPEND`` descriptor: no two writers share a file,
and a line is on disk as soon as the attempt ends.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from contract.regular_file import NotRegularFileError, open_regular

__all__ = [
    "RECORD_FORMAT",
    "OUTCOMES",
    "CALL_KINDS",
    "TRANSPORT_ERROR",
    "INTERRUPTED",
    "Call",
    "ClientAttempt",
    "AttemptRecorder",
    "RecordError",
    "read_attempts",
    "record_files",
]

RECORD_FORMAT = "obslab-client-attempt/1"
# published / failed / cancelled: the server said so. abandoned: the client walked away without a
# terminal answer (gave up on a chunk with OBSLAB_LOAD_ON_GIVE_UP=abandon, or was stopped mid-flow).
# error: the client could not tell (a transport error or an unexpected answer on the way).
OUTCOMES = ("published", "failed", "cancelled", "abandoned", "error")
CALL_KINDS = ("create", "chunk", "complete", "status", "cancel")
TRANSPORT_ERROR = 0
INTERRUPTED = -1


class RecordError(ValueError):
    """A client record that cannot be read; names the file and line."""


@dataclass
class Call:
    """One HTTP call of an attempt.

    ``status`` is the HTTP status, 0 for a transport error, -1 for a call still in flight when the
    user was stopped; ``code`` the ``error.code`` of a JSON error answer; ``chunk`` and ``attempt``
    (the ``X-Chunk-Attempt`` sent) only on chunk calls.
    """

    kind: str
    status: int
    chunk: int | None = None
    attempt: int | None = None
    code: str | None = None

    @property
    def answered(self) -> bool:
        """Whether the server's answer reached the client (else it may or may not have acted)."""
        return self.status > 0

    def to_json(self) -> dict:
        data = {"kind": self.kind, "status": self.status}
        for name in ("chunk", "attempt", "code"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_json(cls, value: dict) -> "Call":
        if not isinstance(value, dict) or value.get("kind") not in CALL_KINDS or \
                not isinstance(value.get("status"), int) or set(value) - {"kind", "status", "chunk", "attempt", "code"}:
            raise ValueError(f"a call is {{kind, status[, chunk, attempt, code]}} with kind in {CALL_KINDS}, "
                             f"got {value!r}")
        return cls(**value)


@dataclass
class ClientAttempt:
    """One publish attempt seen from the client (mutable while the flow runs, then written once)."""

    request_id: str
    run_id: str
    user: str
    trace_id: str
    started_at: str
    cohort: dict[str, str]
    media_size_bytes: int
    chunk_count: int
    upload_id: str | None = None
    transcode_mode: str | None = None
    outcome: str = "error"
    reason: str | None = None
    latency_ms: float = 0.0
    retries: int = 0
    calls: list[Call] = field(default_factory=list)

    def to_line(self) -> str:
        data = asdict(self)
        data["calls"] = [c.to_json() for c in self.calls]
        return json.dumps({"format": RECORD_FORMAT, **data}, separators=(",", ":")) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "ClientAttempt":
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not an {RECORD_FORMAT} line (format={data.get('format')!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["calls"] = [Call.from_json(c) for c in fields.get("calls", [])]
        attempt = cls(**fields)
        if attempt.outcome not in OUTCOMES:
            raise ValueError(f"outcome {attempt.outcome!r} is not one of {', '.join(OUTCOMES)}")
        return attempt


class AttemptRecorder:
    """Appends attempts to ``<directory>/attempts-<host>-<pid>.jsonl``; safe across processes.

    The file is opened on first write in the writing process, so a recorder created before
    Locust forks its worker processes still gives each process its own file.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._fd: int | None = None
        self._pid: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"attempts-{socket.gethostname()}-{os.getpid()}.jsonl"

    def write(self, attempt: ClientAttempt) -> None:
        if self._pid != os.getpid():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._pid = os.getpid()
        data = attempt.to_line().encode()
        written = os.write(self._fd, data)  # type: ignore[arg-type]
        while written < len(data):  # a short write only on a full disk or a signal
            written += os.write(self._fd, data[written:])  # type: ignore[arg-type]

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None


def record_files(path: str | os.PathLike) -> list[Path]:
    """The record files at ``path``: the file itself, or every ``*.jsonl`` in a directory."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("*.jsonl"))
    if not path.exists():
        raise RecordError(f"client record {path} does not exist")
    return [path]


def _iter_file(path: Path) -> Iterator[ClientAttempt]:
    try:
        f = open_regular(path)  # a FIFO would block the reader forever
    except OSError as e:
        raise RecordError(str(e) if isinstance(e, NotRegularFileError)
                          else f"client record {path}: cannot read: {e.strerror or e}") from None
    with f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"{path}:{number}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None
            if not line.strip():
                continue
            try:
                yield ClientAttempt.from_dict(json.loads(line))
            except (ValueError, TypeError) as e:
                raise RecordError(f"{path}:{number}: not a client attempt record: {e}") from None


def read_attempts(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[ClientAttempt]:
    """Every attempt in a record file or directory (or several), in start order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    attempts = [a for p in paths for f in record_files(p) for a in _iter_file(f)]
    attempts.sort(key=lambda a: (a.started_at, a.request_id))
    return attempts
