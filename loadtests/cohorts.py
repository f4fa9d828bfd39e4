"""Who the simulated creators are: a weighted mix over the contract's bounded cohort sets.

Every value comes from ``contract.events``, so the load generator cannot invent a label the
service, the SLI engine or the rules do not know. The network type also sets how fast a creator
uploads (the pause between chunks), so a slow-network cohort really is slower.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from contract.brief import brief
from contract.events import APP_VERSIONS, FLAGS, MEDIA_SIZE_BUCKETS, NETWORK_TYPES, REGIONS, media_size_bucket

__all__ = [
    "DEFAULT_MIX",
    "UPLINK_BYTES_PER_S",
    "MEDIA_SIZES",
    "CohortMix",
    "Cohort",
    "CohortMixError",
    "parse_mix",
    "parse_mix_by_release",
    "chunk_pause_s",
]

MiB = 1024 * 1024

# Default share of each value, per dimension (weights, need not sum to 1).
DEFAULT_MIX: dict[str, dict[str, float]] = {
    "region": {"us-east": 0.40, "us-west": 0.25, "eu-west": 0.20, "ap-south": 0.15},
    "app_version": {"5.2.0": 0.10, "5.3.0": 0.25, "5.4.0": 0.55, "5.5.0-beta": 0.10},
    "network_type": {"wifi": 0.50, "5g": 0.20, "4g": 0.22, "3g": 0.08},
    "media_size_bucket": {"small": 0.60, "medium": 0.30, "large": 0.10},
}
_ALLOWED = {
    "region": REGIONS,
    "app_version": APP_VERSIONS,
    "network_type": NETWORK_TYPES,
    "media_size_bucket": MEDIA_SIZE_BUCKETS,
}

# Nominal uplink per network type. The pause after each chunk is chunk_bytes / uplink,
# scaled by the pace factor (OBSLAB_LOAD_PACE; 0 = no pause, for capacity runs).
UPLINK_BYTES_PER_S = {"wifi": 4 * MiB, "5g": 2 * MiB, "4g": 1 * MiB, "3g": MiB // 4}

# Per media size bucket: declared size range (bytes, the contract's buckets) and chunk count range.
# The declared size is what the creator says the video weighs; the bytes actually sent are a
# sample of it (chunk_bytes per chunk), so a laptop can drive the lab.
MEDIA_SIZES = {
    "small": ((2 * MiB, 20 * MiB - 1), (2, 4)),
    "medium": ((20 * MiB, 200 * MiB - 1), (4, 8)),
    "large": ((200 * MiB, 2000 * MiB), (8, 16)),
}


class CohortMixError(ValueError):
    """A mix that names an unknown dimension or value, or has no positive weight."""


@dataclass(frozen=True)
class Cohort:
    region: str
    app_version: str
    network_type: str
    media_size_bucket: str
    media_size_bytes: int
    chunk_count: int

    def as_dict(self) -> dict[str, str]:
        return {
            "region": self.region,
            "app_version": self.app_version,
            "network_type": self.network_type,
            "media_size_bucket": self.media_size_bucket,
        }


@dataclass(frozen=True)
class CohortMix:
    """Weights per cohort dimension; ``draw`` picks one creator's cohort and media."""

    weights: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_MIX)

    def __post_init__(self) -> None:
        for dimension, table in self.weights.items():
            if dimension not in _ALLOWED:
                raise CohortMixError(
                    f"unknown cohort dimension {brief(dimension)}; expected one of {', '.join(_ALLOWED)}")
            unknown = set(table) - set(_ALLOWED[dimension])
            if unknown:
                raise CohortMixError(
                    f"unknown {dimension} value(s) {', '.join(sorted(unknown))}; "
                    f"expected from {', '.join(_ALLOWED[dimension])}")
            if any(w < 0 for w in table.values()) or sum(table.values()) <= 0:
                raise CohortMixError(f"{dimension} weights must be >= 0 with a positive sum, got {table}")
        missing = set(_ALLOWED) - set(self.weights)
        if missing:
            raise CohortMixError(f"the mix has no weights for {', '.join(sorted(missing))}")

    def _pick(self, dimension: str, rng: random.Random) -> str:
        table = self.weights[dimension]
        values = [v for v in _ALLOWED[dimension] if table.get(v, 0) > 0]  # contract order: reproducible
        return rng.choices(values, weights=[table[v] for v in values])[0]

    def draw(self, rng: random.Random) -> Cohort:
        region = self._pick("region", rng)
        app_version = self._pick("app_version", rng)
        network_type = self._pick("network_type", rng)
        bucket = self._pick("media_size_bucket", rng)
        (size_low, size_high), (chunks_low, chunks_high) = MEDIA_SIZES[bucket]
        size = rng.randint(size_low, size_high)
        assert media_size_bucket(size) == bucket, (size, bucket)
        return Cohort(region, app_version, network_type, bucket, size, rng.randint(chunks_low, chunks_high))


def parse_mix(text: str) -> CohortMix:
    """The default mix with the dimensions given in JSON replaced, e.g. ``{"network_type": {"3g": 1}}``."""
    if not text.strip():
        return CohortMix()
    try:
        override = json.loads(text)
    except json.JSONDecodeError as e:
        raise CohortMixError(f"cohort mix is not JSON ({e.msg} at column {e.colno}): {brief(text)}") from None
    if not isinstance(override, dict) or not all(isinstance(v, dict) for v in override.values()):
        raise CohortMixError('cohort mix must be {"dimension": {"value": weight, ...}, ...}')
    weights = {**DEFAULT_MIX, **override}
    try:
        weights = {d: {v: float(w) for v, w in table.items()} for d, table in weights.items()}
    except (TypeError, ValueError):
        raise CohortMixError(f"cohort weights must be numbers: {brief(text)}") from None
    return CohortMix(weights)


def parse_mix_by_release(text: str, base: CohortMix) -> dict[str, CohortMix]:
    """``{"canary": {"network_type": {"3g": 1}}}`` → release variant → ``base`` with those dimensions replaced.

    Models an uneven rollout: the variant's creators are not drawn from the same traffic as the rest."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise CohortMixError(f"mix by release is not JSON ({e.msg} at column {e.colno}): {brief(text)}") from None
    if not isinstance(raw, dict):
        raise CohortMixError('mix by release must be {"variant": {"dimension": {"value": weight}}}')
    out: dict[str, CohortMix] = {}
    for variant, override in raw.items():
        if variant not in FLAGS["release"]:
            raise CohortMixError(f"unknown release variant {brief(variant)}; expected one of "
                                 f"{', '.join(FLAGS['release'])}")
        if not isinstance(override, dict) or not all(isinstance(v, dict) for v in override.values()):
            raise CohortMixError(f'{variant}: expected {{"dimension": {{"value": weight, ...}}}}, got {brief(override)}')
        try:
            weights = {d: {v: float(w) for v, w in table.items()} for d, table in {**base.weights, **override}.items()}
        except (TypeError, ValueError):
            raise CohortMixError(f"{variant}: cohort weights must be numbers: {brief(override)}") from None
        try:
            out[variant] = CohortMix(weights)
        except CohortMixError as e:
            raise CohortMixError(f"{variant}: {e}") from None
    return out


def chunk_pause_s(network_type: str, chunk_bytes: int, pace: float, rng: random.Random) -> float:
    """Pause after sending one chunk: its transfer time on this network, +-25 % jitter, times ``pace``."""
    if pace <= 0:
        return 0.0
    return chunk_bytes / UPLINK_BYTES_PER_S[network_type] * pace * rng.uniform(0.75, 1.25)

