"""Chunk retry policies, as pure logic: which attempt comes next and how long to wait for it.

``none``       never retry: the first failure of a chunk is final.
``immediate``  retry at once, up to the attempt cap (what a naive client does; it hammers a
               struggling server).
``backoff``    capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential
               Backoff And Jitter"): before attempt ``k+1`` wait ``uniform(0, min(cap, base * 2**(k-1)))``,
               up to the attempt cap. Jitter spreads retries of many clients apart.

The caller owns the random generator, so a seeded user retries reproducibly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from contract.brief import brief

__all__ = ["RETRY_POLICIES", "RetryPolicy", "RetryPolicyError"]

RETRY_POLICIES = ("none", "immediate", "backoff")


class RetryPolicyError(ValueError):
    """A retry policy that cannot work (unknown kind, attempt cap < 1, negative delays)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries a failed chunk.

    ``max_attempts`` counts every try of one chunk, the first included (so 4 means up to 3 retries).
    ``base_s`` and ``cap_s`` only matter to ``backoff``.
    """

    kind: str = "backoff"
    max_attempts: int = 4
    base_s: float = 0.05
    cap_s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in RETRY_POLICIES:
            raise RetryPolicyError(f"unknown retry policy {brief(self.kind)}; expected one of {', '.join(RETRY_POLICIES)}")
        if self.max_attempts < 1:
            raise RetryPolicyError(f"retry attempt cap must be at least 1, got {self.max_attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise RetryPolicyError(f"retry delays must not be negative (base {self.base_s}s, cap {self.cap_s}s)")
        if self.kind == "none" and self.max_attempts != 1:
            # "none" means exactly one try, whatever the cap says.
            object.__setattr__(self, "max_attempts", 1)

    def may_retry(self, attempt: int) -> bool:
        """Whether a chunk whose try number ``attempt`` (1 = first) just failed may be tried again."""
        if attempt < 1:
            raise RetryPolicyError(f"attempt numbers start at 1, got {attempt}")
        return attempt < self.max_attempts

    def ceiling_s(self, attempt: int) -> float:
        """Upper bound of the wait after failed try ``attempt``: ``min(cap, base * 2**(attempt-1))``."""
        if self.kind != "backoff":
            return 0.0
        # Cap the exponent so huge attempt numbers cannot overflow a float.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 60))

    def delay_s(self, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before retrying after failed try ``attempt``; None when the cap says give up."""
        if not self.may_retry(attempt):
            return None
        if self.kind == "backoff":
            return rng.uniform(0.0, self.ceiling_s(attempt))
        return 0.0
