"""Open an input file only if it is a regular file.

A FIFO given where a file is expected would block its reader forever (no writer, or one that
never closes), and a device such as /dev/zero never ends. Every reader of a user-named file
opens it through :func:`open_regular`, which refuses anything else with
``PATH: not a regular file (a FIFO)`` without blocking: the file is opened non-blocking and
checked on the open descriptor, so a path swapped between the check and the read is caught too.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

__all__ = ["NotRegularFileError", "check_regular", "kind_of", "open_regular", "read_regular"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO")."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


class NotRegularFileError(OSError):
    """``path`` exists but is a FIFO, a directory, a socket or a device."""

    def __init__(self, path: str | os.PathLike, mode: int):
        self.kind = kind_of(mode)
        super().__init__(errno.EINVAL, f"{os.fspath(path)}: not a regular file ({self.kind})", os.fspath(path))

    def __str__(self) -> str:
        return self.strerror


def check_regular(path: str | os.PathLike) -> None:
    """Raise NotRegularFileError if ``path`` exists and is not a regular file (OSError if it is missing)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(path, mode)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for binary reading; NotRegularFileError (an OSError) if it is not a regular file.

    Other OSErrors (missing, unreadable) propagate as they are.
    """
    check_regular(path)  # a socket cannot even be opened: name it before trying
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO must not block here
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit + 1`` of them when a limit is given, so a caller
    can tell "too big" without reading it all)."""
    with open_regular(path) as f:
        return f.read() if limit is None else f.read(limit + 1)

