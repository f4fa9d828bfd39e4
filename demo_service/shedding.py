"""Load shedding: the operator's control that rejects a declared low-priority class of requests early.

A shed class (``status`` polls, ``feed`` reads; ``contract.faults.SHED_CLASSES``) set through
``PUT /admin/shed/{class}`` is answered 503 ``load_shed`` with a ``Retry-After`` before the request reads
anything at the database primary, so the capacity it would have taken goes to the requests that matter
(chunk writes and publishes). Rejected requests are counted in ``obslab_requests_shed_total{class}`` and
their 503s in the HTTP metrics, as a real gateway logs what it shed. Pure validation here; the check runs
per request (``shed_if_declared``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

from contract.faults import SHED_CLASSES, SHED_PARAMS

__all__ = ["ShedSpec", "ShedSpecError", "parse_shed", "SHED_CLASSES", "SHED_ERROR_CODE", "sheds"]

SHED_ERROR_CODE = "load_shed"


class ShedSpecError(ValueError):
    """An invalid shed spec; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ShedSpec:
    name: str  # the request class
    percent: float = 100.0
    retry_after_s: int = 2

    def to_json(self) -> dict[str, Any]:
        return {"class": self.name, "route": SHED_CLASSES[self.name], "percent": self.percent,
                "retry_after_s": self.retry_after_s}

    def stored(self) -> dict[str, Any]:
        return {"percent": self.percent, "retry_after_s": self.retry_after_s}


def parse_shed(name: str, spec: Any) -> ShedSpec:
    """Validate a shed spec (the JSON body of ``PUT /admin/shed/{class}``; ``{}`` sheds the whole class)."""
    if name not in SHED_CLASSES:
        raise ShedSpecError(f"no request class {name!r} to shed; classes: {sorted(SHED_CLASSES)}", "class")
    if not isinstance(spec, Mapping):
        raise ShedSpecError("shed spec must be a JSON object", None)
    extra = sorted(set(spec) - set(SHED_PARAMS))
    if extra:
        raise ShedSpecError(f"unknown field(s) {extra}; allowed: {sorted(SHED_PARAMS)}", extra[0])
    values: dict[str, float] = {}
    for pname, (default, lo, hi) in SHED_PARAMS.items():
        value = spec.get(pname, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ShedSpecError(f"{pname} must be a number in [{lo:g}, {hi:g}]", pname)
        values[pname] = value
    if values["retry_after_s"] != int(values["retry_after_s"]):
        raise ShedSpecError("retry_after_s must be a whole number of seconds", "retry_after_s")
    return ShedSpec(name, float(values["percent"]), int(values["retry_after_s"]))


def sheds(spec: ShedSpec | None, rng: random.Random) -> bool:
    """Whether this request of the class is rejected: a random ``percent`` of them (a poll rejected now may
    pass on its next try; a request key would reject the same upload's polls every time)."""
    if spec is None:
        return False
    return spec.percent >= 100.0 or rng.random() * 100.0 < spec.percent
