"""Feature flags with sticky percentage rollout by user hash — pure logic, no I/O.

A flag spec is ``{"default": variant, "rollout": {variant: percentage, ...}}``. Each user
falls in a bucket in [0, 100) derived from the flag name and the user's keyed hash;
variants take consecutive slices of that range in the order of ``FLAGS[flag]``. A user
in a 1 % canary therefore stays in the canary at 5 %, 25 % and 100 % (sticky rollout).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from contract.events import FLAGS

__all__ = ["FlagSpecError", "FlagSpec", "parse_flag", "user_bucket", "variant_for", "assign"]


class FlagSpecError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FlagSpec:
    name: str
    default: str
    rollout: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "rollout": dict(self.rollout)}


def default_spec(name: str) -> FlagSpec:
    return FlagSpec(name=name, default=FLAGS[name][0])


def parse_flag(name: str, spec: Any) -> FlagSpec:
    """Validate a flag spec (the JSON body of ``PUT /admin/flags/{name}``)."""
    if name not in FLAGS:
        raise FlagSpecError(f"unknown flag {name!r}; flags: {sorted(FLAGS)}", "name")
    if not isinstance(spec, dict):
        raise FlagSpecError("flag spec must be a JSON object", None)
    extra = set(spec) - {"default", "rollout"}
    if extra:
        raise FlagSpecError(f"unknown field(s) {sorted(extra)}; allowed: ['default', 'rollout']", sorted(extra)[0])
    variants = FLAGS[name]
    default = spec.get("default", variants[0])
    if default not in variants:
        raise FlagSpecError(f"default must be one of {list(variants)}", "default")
    rollout_in = spec.get("rollout") or {}
    if not isinstance(rollout_in, dict):
        raise FlagSpecError("rollout must be an object of variant -> percentage", "rollout")
    rollout: dict[str, float] = {}
    for variant, pct in rollout_in.items():
        if variant not in variants:
            raise FlagSpecError(f"rollout variant must be one of {list(variants)}", f"rollout.{variant}")
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise FlagSpecError("rollout percentage must be a number in [0, 100]", f"rollout.{variant}")
        rollout[variant] = float(pct)
    if sum(rollout.values()) > 100.0 + 1e-9:
        raise FlagSpecError("rollout percentages add up to more than 100", "rollout")
    # Keep the contract's variant order so slices (and stickiness) do not depend on JSON key order.
    ordered = {v: rollout[v] for v in variants if v in rollout}
    return FlagSpec(name=name, default=default, rollout=ordered)


def user_bucket(flag: str, user_hash: str) -> float:
    """The user's stable position in [0, 100) for one flag (2 decimals of resolution)."""
    digest = hashlib.blake2b(f"{flag}\x00{user_hash}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 10_000) / 100.0


def variant_for(spec: FlagSpec, user_hash: str) -> str:
    bucket = user_bucket(spec.name, user_hash)
    start = 0.0
    for variant, pct in spec.rollout.items():
        if start <= bucket < start + pct:
            return variant
        start += pct
    return spec.default


def assign(specs: Mapping[str, FlagSpec], user_hash: str) -> dict[str, str]:
    """Every flag's variant for one user; flags without a stored spec take their default."""
    return {name: variant_for(specs.get(name) or default_spec(name), user_hash) for name in FLAGS}
