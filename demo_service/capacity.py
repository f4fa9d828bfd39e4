"""The database primary's connection slots: a bounded number of concurrent queries per API process.

Only a ``capacity`` fault (target ``db``) bounds them: the lab's embedded SQLite answers in microseconds
and has no connection pool worth the name, so the fault stands for a primary whose pool is small for the
traffic. A query takes a slot for ``query_ms`` (its time at the primary); when every slot is busy it waits
at most ``wait_ms`` for one and then fails, as a query to an overloaded dependency does. Under light load
nothing waits; under a surge the waits pile up and queries fail: the failure depends on the load.

Slots are per process (each gunicorn worker has its own pool, as each would hold its own connections).
"""

from __future__ import annotations

import threading
import time
from typing import Iterable

from demo_service.faults import Fault

__all__ = ["SlotPool", "pool_for", "primary_query"]


class SlotPool:
    """``slots`` concurrent holders; ``hold`` waits at most ``wait_s`` for one."""

    def __init__(self, slots: int):
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)

    def hold(self, seconds: float, wait_s: float) -> bool:
        """Take a slot for ``seconds``; False (and nothing held) when none came free within ``wait_s``."""
        if not self._free.acquire(timeout=max(wait_s, 0.0)):
            return False
        try:
            if seconds > 0:
                time.sleep(seconds)
        finally:
            self._free.release()
        return True


_pools: dict[tuple[str, int], SlotPool] = {}
_pools_lock = threading.Lock()


def pool_for(fault: Fault) -> SlotPool:
    """This process's pool of a capacity fault (one per fault name and slot count: a changed spec is a new pool)."""
    key = (fault.name, int(fault.param("slots")))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = SlotPool(key[1])
        return pool


def primary_query(faults: Iterable[Fault]) -> bool:
    """Run one query at the primary under the matching ``capacity`` faults: True when it got its slot(s)."""
    for fault in faults:
        if fault.kind != "capacity":
            continue
        if not pool_for(fault).hold(fault.param("query_ms") / 1000.0, fault.param("wait_ms") / 1000.0):
            return False
    return True
