"""A full data disk: how the service tells (free space, "no space" errors) and what it answers.

The data directory holds state.db, the event log and the metric files. When its filesystem
is full the service degrades instead of failing: ``/healthz`` answers 503 with the cause
``disk_full``, new uploads and writes that hit the full disk answer 503 ``storage_full``
with ``Retry-After``, and everything recovers by itself once space is back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sqlite3

__all__ = ["DISK_FULL_BELOW_BYTES", "STORAGE_FULL_RETRY_AFTER_S", "DISK_FULL", "free_bytes", "disk_full",
           "is_no_space", "can_append"]

# Below this much free space the data disk counts as full: new uploads are refused (503) rather than
# started and then left without their events. A handful of events and SQLite pages fit in it.
DISK_FULL_BELOW_BYTES = 1 << 20
STORAGE_FULL_RETRY_AFTER_S = 5
DISK_FULL = "disk_full"  # the /healthz cause

_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # "database or disk is full" (sqlite3.SQLITE_FULL from Python 3.11 on)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of ``path`` (None: cannot tell)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_full(path: str | os.PathLike) -> bool:
    free = free_bytes(path)
    return free is not None and free < DISK_FULL_BELOW_BYTES


def is_no_space(error: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or SQLite's SQLITE_FULL (state.db or its WAL could not grow)."""
    if isinstance(error, OSError):
        return error.errno in _NO_SPACE_ERRNOS
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return (code & 0xFF) == _SQLITE_FULL if code is not None else "disk is full" in str(error)
    return False


_FALLOC_FL_KEEP_SIZE = 1
_libc = None


def _fallocate():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            _libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        except (OSError, AttributeError):
            _libc = False
    return _libc.fallocate if _libc else None


def can_append(fd: int, nbytes: int) -> bool | None:
    """Whether ``nbytes`` more can be appended to the open file ``fd`` right now, or None if unknown.

    Reserves the blocks past the end without changing the file's size (Linux ``fallocate`` with
    ``FALLOC_FL_KEEP_SIZE``), so the answer holds for the next append of that size; nothing is
    written. None where the call or the filesystem does not support it.
    """
    fallocate = _fallocate()
    if fallocate is None:
        return None
    try:
        end = os.fstat(fd).st_size
    except OSError:
        return False
    if fallocate(fd, _FALLOC_FL_KEEP_SIZE, end, nbytes) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        return None
    return False
