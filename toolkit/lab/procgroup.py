"""Child processes that never outlive their parent: own process group, stopped as a group.

The lab starts several long-running programs (gunicorn, Locust, Prometheus). Each runs in
its own session so a terminal's Ctrl-C reaches only the lab, which then stops them in
order; each also gets PR_SET_PDEATHSIG so that a lab killed with SIGKILL still takes
its direct children with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

__all__ = ["GroupProcess", "start_group_process", "stop_process_group", "descendants", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to this child when the lab process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux/glibc: the lab's own shutdown still stops the group
        pass


@dataclass
class GroupProcess:
    """A child started in its own process group, with its output going to a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    _log: IO | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the whole group, wait, then SIGKILL what is left; return the exit code."""
        code = stop_process_group(self.popen, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_group_process(name: str, argv: Sequence[str], *, log_path: Path | None = None,
                        env: dict[str, str] | None = None, cwd: str | Path | None = None) -> GroupProcess:
    """Start argv in a new session (its own process group) that dies with its parent."""
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
    popen = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        env=env, cwd=cwd, start_new_session=True, preexec_fn=die_with_parent,
    )
    return GroupProcess(name, popen, log_path, log)


def stop_process_group(popen: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """Stop a child started with start_new_session=True and everything in its group."""
    pgid = popen.pid  # a session leader's pgid is its pid
    if popen.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            popen.wait(5)
    # Grandchildren (e.g. gunicorn workers) may outlive a leader that already exited.
    deadline = time.monotonic() + timeout_s
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.2)
            break
        _signal_group(pgid, signal.SIGTERM)
        time.sleep(0.1)
    return popen.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every live process below pid (children, grandchildren, ...)."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
