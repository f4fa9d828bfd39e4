"""Faults: what can be injected, where, for whom — pure validation and matching, no I/O.

A fault is ``kind`` on ``target`` for the requests its ``selector`` matches. The
control plane stores specs (``parse_fault``), every worker matches them against a
request's cohort (``matching``). Percentage selection is deterministic per request
key (e.g. request_id + chunk + attempt), so a client retry can succeed where the
first try failed, and the same run replays the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from contract.faults import API_ROUTES, KIND_TARGETS, KINDS, PARAMS, SELECTOR_VALUES, TARGETS

__all__ = [
    "KINDS",
    "TARGETS",
    "API_ROUTES",
    "KIND_TARGETS",
    "SELECTOR_VALUES",
    "FaultSpecError",
    "Fault",
    "parse_fault",
    "selected",
    "matching",
]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class FaultSpecError(ValueError):
    """An invalid fault spec; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str
    target: str
    route: str | None = None
    selector: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    percentage: float = 100.0
    params: Mapping[str, float] = field(default_factory=dict)
    expires_at: float | None = None  # epoch seconds; None = until deleted

    def param(self, name: str) -> float:
        return self.params.get(name, PARAMS[self.kind][name][0])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "target": self.target, "route": self.route,
            "selector": {k: list(v) for k, v in self.selector.items()},
            "percentage": self.percentage, "params": dict(self.params), "expires_at": self.expires_at,
        }


def validate_name(name: str, what: str = "fault") -> str:
    if not (1 <= len(name) <= 64) or not set(name) <= _NAME_CHARS:
        raise FaultSpecError(f"{what} name must be 1-64 characters of a-z 0-9 - _", "name")
    return name


def parse_fault(name: str, spec: Any, now: float | None = None) -> Fault:
    """Validate a fault spec (the JSON body of ``PUT /admin/faults/{name}``)."""
    validate_name(name)
    if not isinstance(spec, dict):
        raise FaultSpecError("fault spec must be a JSON object", None)
    allowed = {"kind", "target", "route", "selector", "percentage", "params", "duration_s", "expires_at"}
    extra = set(spec) - allowed
    if extra:
        raise FaultSpecError(f"unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}", sorted(extra)[0])
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {list(KINDS)}", "kind")
    target = spec.get("target")
    if target not in TARGETS:
        raise FaultSpecError(f"target must be one of {list(TARGETS)}", "target")
    if target not in KIND_TARGETS[kind]:
        raise FaultSpecError(f"kind {kind} applies to targets {list(KIND_TARGETS[kind])}, not {target}", "target")
    route = spec.get("route")
    if route is not None:
        if target != "api":
            raise FaultSpecError("route applies only to target api", "route")
        if route not in API_ROUTES:
            raise FaultSpecError(f"route must be one of {list(API_ROUTES)}", "route")
    selector_in = spec.get("selector") or {}
    if not isinstance(selector_in, dict):
        raise FaultSpecError("selector must be an object of dimension -> list of values", "selector")
    selector: dict[str, tuple[str, ...]] = {}
    percentage = spec.get("percentage", 100.0)
    for dim, values in selector_in.items():
        if dim == "percentage":  # also accepted inside the selector, as the brief lists it there
            percentage = values
            continue
        if dim not in SELECTOR_VALUES:
            raise FaultSpecError(f"selector dimension must be one of {list(SELECTOR_VALUES) + ['percentage']}",
                                 f"selector.{dim}")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values or any(v not in SELECTOR_VALUES[dim] for v in values):
            raise FaultSpecError(f"selector.{dim} must be a non-empty list of {list(SELECTOR_VALUES[dim])}",
                                 f"selector.{dim}")
        selector[dim] = tuple(values)
    if isinstance(percentage, bool) or not isinstance(percentage, (int, float)) or not 0 <= percentage <= 100:
        raise FaultSpecError("percentage must be a number in [0, 100]", "percentage")
    params_in = spec.get("params") or {}
    if not isinstance(params_in, dict):
        raise FaultSpecError("params must be an object", "params")
    params: dict[str, float] = {}
    for pname, value in params_in.items():
        if pname not in PARAMS[kind]:
            raise FaultSpecError(f"kind {kind} takes params {sorted(PARAMS[kind])}", f"params.{pname}")
        _, lo, hi = PARAMS[kind][pname]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise FaultSpecError(f"params.{pname} must be a number in [{lo}, {hi}]", f"params.{pname}")
        params[pname] = float(value)
    expires_at = spec.get("expires_at")
    duration = spec.get("duration_s")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= 7 * 86400:
            raise FaultSpecError("duration_s must be a number in (0, 604800]", "duration_s")
        if now is None:
            raise FaultSpecError("duration_s needs the current time", "duration_s")
        expires_at = now + float(duration)
    elif expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))):
        raise FaultSpecError("expires_at must be epoch seconds", "expires_at")
    return Fault(name=name, kind=kind, target=target, route=route, selector=selector,
                 percentage=float(percentage), params=params,
                 expires_at=float(expires_at) if expires_at is not None else None)


def selected(fault_name: str, key: str, percentage: float) -> bool:
    """Deterministic percentage selection of one request key for one fault."""
    if percentage >= 100.0:
        return True
    if percentage <= 0.0:
        return False
    digest = hashlib.blake2b(f"{fault_name}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 < percentage * 100


def matching(faults: Iterable[Fault], *, target: str, cohort: Mapping[str, str | None], key: str,
             kinds: Iterable[str] | None = None, route: str | None = None,
             now: float | None = None) -> list[Fault]:
    """The faults on ``target`` (and ``route``) that apply to a request of ``cohort`` with ``key``.

    A selector dimension whose cohort value is unknown (None) does not match.
    """
    wanted = set(kinds) if kinds is not None else None
    out = []
    for f in faults:
        if f.target != target or (wanted is not None and f.kind not in wanted):
            continue
        if f.route is not None and f.route != route:
            continue
        if f.expires_at is not None and now is not None and now >= f.expires_at:
            continue
        if any(cohort.get(dim) not in values for dim, values in f.selector.items()):
            continue
        if not selected(f.name, key, f.percentage):
            continue
        out.append(f)
    return out
