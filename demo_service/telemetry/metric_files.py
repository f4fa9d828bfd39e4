"""prometheus_client's multiprocess files, made safe on a full disk.

In multiprocess mode every worker keeps its metric values in memory-mapped files
(``PROMETHEUS_MULTIPROC_DIR/<type>_<pid>.db``). prometheus_client sizes them with
``truncate``, which makes a *sparse* file: the disk blocks are only allocated when a page
of the mapping is first written. On a full disk that first write cannot be backed and the
kernel kills the worker with SIGBUS: every new worker dies on its first request, a crash
loop in which ``/healthz`` times out.

Two changes, installed per worker by ``install()`` before the first metric value exists:

- ``PreallocatedMmapedDict`` reserves the blocks with ``posix_fallocate`` before the file is
  mapped and before it grows, so a write into the mapping never needs a new block; a full
  disk shows up as ``OSError(ENOSPC)`` at that point instead of a SIGBUS later.
- ``DiskSafeValue`` catches that error: the value keeps its increments in memory (a counter
  never goes backwards and nothing is lost), retries the file on every update and on every
  ``/healthz`` (``flush_pending``), and writes what it held once space is back. Meanwhile
  ``pending_problem`` names the cause so ``/healthz`` reports the service degraded.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import weakref
from typing import Any

from demo_service.diskspace import DISK_FULL, is_no_space
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict

__all__ = ["PreallocatedMmapedDict", "install", "installed", "flush_pending", "pending_problem"]

INITIAL_FILE_BYTES = 1 << 16  # prometheus_client's own initial size (mmap_dict._INITIAL_MMAP_SIZE)


def _entry_bytes(key: str) -> int:
    """Bytes one value takes in the file (MmapedDict's layout: length, key padded to 8, two doubles)."""
    encoded = len(key.encode("utf-8"))
    return 4 + encoded + (8 - (encoded + 4) % 8) + 16


def _reserve_new_file(filename: str) -> None:
    """Allocate the blocks of a metric file before prometheus_client maps it."""
    fd = os.open(filename, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            os.posix_fallocate(fd, 0, max(size, INITIAL_FILE_BYTES))
        except OSError:
            if size == 0:  # an empty .db would break every /metrics scrape (the collector reads its header)
                os.unlink(filename)
            raise
    finally:
        os.close(fd)


class PreallocatedMmapedDict(MmapedDict):
    """An ``MmapedDict`` whose every mapped page has its disk blocks allocated beforehand."""

    def __init__(self, filename: str, read_mode: bool = False):
        if not read_mode:
            _reserve_new_file(filename)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        needed = self._used + _entry_bytes(key)
        if needed > self._capacity:
            capacity = self._capacity
            while needed > capacity:  # the same doubling as MmapedDict, which then only remaps
                capacity *= 2
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        super()._init_value(key)


_pending: "weakref.WeakSet[Any]" = weakref.WeakSet()
_pending_lock = threading.Lock()
_last_error: list[Any] = ["", False]  # message, was it "no space"


_pack_value = struct.Struct("dd").pack  # a value and its timestamp, as MmapedDict stores them


def _slot_of(inner: Any) -> tuple[int, Any, int] | None:
    """(pid, file, byte position) of a prometheus_client ``MmapedValue``, for writing it without its lock and
    fork check; None when this prometheus_client keeps its values differently (then every update takes the
    library's own path). The pid is part of the slot: in a forked child the library reopens its files."""
    file = getattr(inner, "_file", None)
    positions = getattr(file, "_positions", None)
    key = getattr(inner, "_key", None)
    if (not isinstance(positions, dict) or key not in positions or not hasattr(file, "_m")
            or not isinstance(getattr(inner, "_value", None), float)):
        return None
    return _pid[0], file, positions[key]


def _value_class(inner_class: type) -> type:
    class DiskSafeValue:
        """A multiprocess value that holds its updates in memory while its file cannot be allocated."""

        _multiprocess = True

        def __init__(self, *args: Any, **kwargs: Any):
            self._args, self._kwargs = args, kwargs
            self._lock = threading.Lock()
            self._inner: Any = None
            self._held_inc = 0.0
            self._held_set: tuple[float, float | None] | None = None
            self._is_held = False
            self._slot: tuple[int, Any, int] | None = None  # (pid, file, position) of the attached value
            with self._lock:
                self._attach()

        def _attach(self) -> bool:
            """Open (or retry) the file-backed value and write what was held; the lock is held."""
            if self._inner is None:
                try:
                    self._inner = inner_class(*self._args, **self._kwargs)
                except OSError as e:
                    self._hold(e)
                    return False
            try:
                if self._held_set is not None:
                    self._inner.set(*self._held_set)
                    self._held_set = None
                if self._held_inc:
                    self._inner.inc(self._held_inc)
                    self._held_inc = 0.0
            except OSError as e:
                self._hold(e)
                return False
            if self._is_held:
                self._is_held = False
                with _pending_lock:
                    _pending.discard(self)
            if self._slot is None:
                self._slot = _slot_of(self._inner)
            return True

        def _hold(self, error: OSError) -> None:
            _last_error[:] = [f"{error.filename or os.environ.get('PROMETHEUS_MULTIPROC_DIR')}: "
                              f"{error.strerror or error}", is_no_space(error)]
            if not self._is_held:
                self._is_held = True
                with _pending_lock:
                    _pending.add(self)

        def inc(self, amount: float) -> None:
            slot = self._slot
            if slot is not None and slot[0] == _pid[0]:
                # The hot path: the value's 16 bytes in the file exist and are backed by allocated blocks, so
                # writing them cannot fail; the value's own lock orders its updates (every update of this
                # value, held or not, takes it). Same bytes as MmapedValue.inc writes, without its four calls.
                inner = self._inner
                with self._lock:
                    inner._value += amount
                    inner._timestamp = 0.0
                    position = slot[2]
                    slot[1]._m[position:position + 16] = _pack_value(inner._value, 0.0)
                return
            inner = self._inner
            if inner is not None and not self._is_held:
                # The library's path (no slot: a prometheus_client that keeps its values differently, or a forked
                # child): the inner value is thread-safe on its own, so this value's lock is not taken; an
                # increment either lands in the file or is held below.
                try:
                    inner.inc(amount)
                    return
                except OSError as e:
                    with self._lock:
                        self._held_inc += amount
                        self._hold(e)
                    return
            with self._lock:
                self._held_inc += amount
                self._attach()

        def set(self, value: float, timestamp: float | None = None) -> None:
            with self._lock:
                self._held_set, self._held_inc = (value, timestamp), 0.0
                self._attach()

        def set_exemplar(self, exemplar: Any) -> None:
            return  # multiprocess mode keeps no exemplars (as prometheus_client's own value)

        def get(self) -> float:
            with self._lock:
                if self._attach():
                    return self._inner.get()
                if self._held_set is not None:
                    return self._held_set[0] + self._held_inc
                return (self._inner.get() if self._inner is not None else 0.0) + self._held_inc

        def get_exemplar(self) -> None:
            return None

        def retry(self) -> None:
            with self._lock:
                self._attach()

    return DiskSafeValue


# MultiProcessValue asks for the process identifier on every update, to notice a fork; os.getpid() is a
# system call each time. The pid is kept here instead and renewed in the child of every fork.
_pid = [os.getpid()]


def _process_identifier() -> int:
    return _pid[0]


def _renew_pid() -> None:
    _pid[0] = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def install() -> None:
    """Make this process's multiprocess metric values full-disk safe (idempotent; before any value exists)."""
    if installed():
        return
    values.MmapedDict = PreallocatedMmapedDict  # the name MultiProcessValue opens its files with
    values.ValueClass = _value_class(values.MultiProcessValue(_process_identifier))
    # Held values are retried on every update and /healthz, and once a second here: a worker that gets
    # no request after space returns still writes what it held, so a scrape sees every increment.
    threading.Thread(target=_retry_held_values, name="metric-files-retry", daemon=True).start()


RETRY_INTERVAL_S = 1.0


def _retry_held_values() -> None:
    while True:
        time.sleep(RETRY_INTERVAL_S)
        with _pending_lock:
            waiting = bool(_pending)
        if waiting:
            try:
                flush_pending()
            except Exception:  # a retry must never end the loop; the next one tries again
                pass


def installed() -> bool:
    return getattr(values.ValueClass, "__name__", "") == "DiskSafeValue"


def flush_pending() -> None:
    """Retry every value held in memory (space may be back)."""
    with _pending_lock:
        held = list(_pending)
    for value in held:
        value.retry()


def pending_problem() -> tuple[str, str] | None:
    """(cause, message) when some metric values of this process are only in memory, else None."""
    with _pending_lock:
        count = len(_pending)
    if not count:
        return None
    message, no_space = _last_error
    return (DISK_FULL if no_space else "metrics_unwritable",
            f"metrics: {count} value(s) held in memory, cannot allocate their file ({message}); "
            "written when space is back")
