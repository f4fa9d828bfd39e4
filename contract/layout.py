"""The data directory's layout: where the service writes what, and where the toolkit reads it.

One home for the names, so the service, `obslab serve`, the lab and the toolkit agree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "STATE_DB", "EVENTS_DIR", "EVENTS_FILE", "TRACES_DIR", "SPANS_FILE", "ADMIN_TOKEN_FILE",
    "METRICS_DIR", "LOAD_DIR", "DRILLS_DIR", "LAB_DATA_SUBDIR", "DEFAULT_LAB_DIR",
    "events_dir", "traces_dir", "admin_token_path",
    "DATA_DIR_MODE", "ADMIN_TOKEN_MODE", "make_data_dir", "read_admin_token_file", "write_admin_token_file",
]

STATE_DB = "state.db"
"""SQLite (WAL) state shared by the API workers and the transcoder: uploads, faults, flags, queue."""
EVENTS_DIR = "events"
"""Lifecycle events, one JSON object per line (schema v1), rotated by size."""
EVENTS_FILE = "events.jsonl"
"""The live event file inside EVENTS_DIR (rotated files get .1, .2, ...)."""
TRACES_DIR = "traces"
"""Spans when no OTLP endpoint is set."""
SPANS_FILE = "spans.jsonl"
"""The span file inside TRACES_DIR."""
ADMIN_TOKEN_FILE = "admin-token"
"""The control plane's bearer token (mode 0600) when OBSLAB_ADMIN_TOKEN is not set."""
METRICS_DIR = "prometheus-multiproc"
"""prometheus_client multiprocess files of the gunicorn workers."""

# The embedded lab (obslab lab): DEFAULT_LAB_DIR/LAB_DATA_SUBDIR is the service's data directory.
DEFAULT_LAB_DIR = ".obslab"
LAB_DATA_SUBDIR = "data"
LOAD_DIR = "load"
"""The lab's client record (Locust attempts-*.jsonl files)."""
DRILLS_DIR = "drills"
"""One directory per drill run (the drill's private record, answers, report)."""


def events_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / EVENTS_DIR


def traces_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / TRACES_DIR


def admin_token_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / ADMIN_TOKEN_FILE


# The files' modes: the data directory and the token are the owner's only.
DATA_DIR_MODE = 0o700  # the admin token, request metadata in events and traces: the owner's only
ADMIN_TOKEN_MODE = 0o600


def make_data_dir(path: str | os.PathLike) -> Path:
    """Create a data directory owner-only (0700); one that exists already is left as its owner set it."""
    p = Path(path)
    p.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    return p


def read_admin_token_file(path: str | os.PathLike) -> str | None:
    """The token in ``path`` (None when missing or empty), its mode tightened to 0600 first.

    A token file left group- or world-readable (copied in, made by an older obslab) would let any
    local user drive the control plane; one that is not a regular file, or not ours to tighten,
    is refused with a ValueError naming it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"admin token file {path}: cannot read: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"admin token file {path}: not a regular file")
        if st.st_mode & 0o077:
            try:
                os.fchmod(fd, ADMIN_TOKEN_MODE)
            except OSError:
                raise ValueError(f"admin token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}) "
                                 f"and cannot be made 0600: chmod 600 it, or remove it") from None
        token = f.read(4096).decode("utf-8", errors="replace").strip()
    return token or None


def write_admin_token_file(path: str | os.PathLike, token: str) -> None:
    """Write ``token`` to ``path``, mode 0600 even if the file existed with a looser one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, ADMIN_TOKEN_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, ADMIN_TOKEN_MODE)  # O_CREAT's mode applies only to a file it creates
        f.write(token + "\n")
