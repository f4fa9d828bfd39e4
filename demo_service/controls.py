"""Faults and flags in force, as every worker sees them, and the effects of faults.

The control plane writes specs to the shared store and bumps a version counter;
each worker re-reads the version at most every ``CONTROL_REFRESH_S`` (0.5 s by
default) and reloads on change, so a change reaches every worker within one second
without a database read per request.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Mapping

from flask import Flask, current_app

from demo_service.faults import Fault, FaultSpecError, matching, parse_fault
from demo_service.flags import FlagSpec, assign, parse_flag
from demo_service.shedding import ShedSpec, ShedSpecError, parse_shed
from demo_service.store import Store

__all__ = ["Controls", "init_app", "get_controls", "sleep_for", "burn_cpu", "grow_memory", "apply_resource_faults"]


class Controls:
    def __init__(self, store: Store, refresh_s: float = 0.5):
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._version = -1
        self._next_check = 0.0
        self._faults: tuple[Fault, ...] = ()
        self._flags: dict[str, FlagSpec] = {}
        self._shed: dict[str, ShedSpec] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.refresh_s
            if self.store.controls_version() == self._version:
                return
            version, controls = self.store.load_controls()
            faults = []
            for name, spec in controls["fault"].items():
                try:
                    faults.append(parse_fault(name, spec))
                except FaultSpecError:
                    continue  # stored specs were validated on PUT; skip anything unreadable
            flags = {}
            for name, spec in controls["flag"].items():
                try:
                    flags[name] = parse_flag(name, spec)
                except ValueError:
                    continue
            shed = {}
            for name, spec in controls.get("shed", {}).items():
                try:
                    shed[name] = parse_shed(name, spec)
                except ShedSpecError:
                    continue
            self._faults, self._flags, self._shed, self._version = tuple(faults), flags, shed, version

    def invalidate(self) -> None:
        """Re-read on next use (the worker that made a change sees it at once)."""
        self._next_check = 0.0

    @property
    def faults(self) -> tuple[Fault, ...]:
        self._refresh()
        return self._faults

    @property
    def flag_specs(self) -> dict[str, FlagSpec]:
        self._refresh()
        return self._flags

    @property
    def shed_specs(self) -> dict[str, ShedSpec]:
        """The request classes being shed (``/admin/shed``), by class."""
        self._refresh()
        return self._shed

    def assign_flags(self, user_hash: str) -> dict[str, str]:
        return assign(self.flag_specs, user_hash)

    def match(self, *, target: str, cohort: Mapping[str, str | None], key: str,
              kinds: Iterable[str] | None = None, route: str | None = None) -> list[Fault]:
        faults = self.faults
        if not faults:
            return []
        return matching(faults, target=target, cohort=cohort, key=key, kinds=kinds, route=route, now=time.time())


def sleep_for(faults: Iterable[Fault], kind: str = "latency", param: str = "latency_ms") -> float:
    """Sleep the summed delay of the matching faults of ``kind``; returns seconds slept."""
    delay = sum(f.param(param) for f in faults if f.kind == kind) / 1000.0
    if delay > 0:
        time.sleep(delay)
    return delay


def burn_cpu(milliseconds: float) -> None:
    """Busy-loop on the CPU (not sleep) for the given wall time."""
    end = time.perf_counter() + milliseconds / 1000.0
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x += i * i


_leaked: list[bytearray] = []
_leaked_bytes = 0
_leak_lock = threading.Lock()


def grow_memory(kib: float, max_mib: float) -> None:
    """Keep ``kib`` more KiB alive per call, up to ``max_mib`` per process (a leak with a ceiling)."""
    global _leaked_bytes
    size = int(kib * 1024)
    with _leak_lock:
        if size <= 0 or _leaked_bytes + size > max_mib * 1024 * 1024:
            return
        block = bytearray(size)
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page so it is resident
        _leaked.append(block)
        _leaked_bytes += size


def apply_resource_faults(faults: Iterable[Fault]) -> None:
    """Latency, CPU burn and memory growth of matching faults (errors and timeouts are the caller's)."""
    faults = list(faults)
    for f in faults:
        if f.kind == "cpu_burn":
            burn_cpu(f.param("cpu_ms"))
        elif f.kind == "memory_growth":
            grow_memory(f.param("kib_per_request"), f.param("max_mib"))
    sleep_for(faults)


def init_app(app: Flask) -> None:
    app.extensions["obslab.controls"] = Controls(app.extensions["obslab.store"], app.config["CONTROL_REFRESH_S"])


def get_controls() -> Controls:
    return current_app.extensions["obslab.controls"]
