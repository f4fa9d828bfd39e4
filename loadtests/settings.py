"""Load generator configuration, from environment variables.

Environment variables rather than command-line flags, because the same locustfile runs headless
(``obslab load``), with the web UI, and distributed (a master and workers in docker compose), and
every one of those processes must see the same settings. Each variable is a documented constant;
``docs/load.md`` lists them with their defaults.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Mapping

from loadtests.cohorts import CohortMix, CohortMixError, parse_mix, parse_mix_by_release
from loadtests.retry import RetryPolicy, RetryPolicyError
from contract import env
from contract.brief import brief
from contract.durations import DurationError, parse_duration

__all__ = [
    "SEED", "RUN_ID", "RETRY_POLICY", "RETRY_MAX_ATTEMPTS", "RETRY_BASE", "RETRY_CAP", "CANCEL_RATE",
    "MIX", "MIX_BY_RELEASE", "PACE", "CHUNK_BYTES", "THINK_TIME", "CREATOR_WEIGHT", "VIEWER_WEIGHT", "RECORD_DIR",
    "SHAPE", "PHASES", "POLL_INTERVAL", "POLL_TIMEOUT", "REQUEST_TIMEOUT", "ON_GIVE_UP",
    "TRACE_SAMPLE_RATIO", "PROGRESS_FILE", "ENV_VARS", "ON_GIVE_UP_CHOICES",
    "LoadSettings", "SettingsError", "from_env", "current", "mix_for",
]

# The variables' names and meanings live in contract.env (one home for every OBSLAB_* name).
SEED = env.LOAD_SEED
RUN_ID = env.LOAD_RUN_ID
RETRY_POLICY = env.LOAD_RETRY_POLICY
RETRY_MAX_ATTEMPTS = env.LOAD_RETRY_MAX_ATTEMPTS
RETRY_BASE = env.LOAD_RETRY_BASE
RETRY_CAP = env.LOAD_RETRY_CAP
CANCEL_RATE = env.LOAD_CANCEL_RATE
MIX = env.LOAD_MIX
MIX_BY_RELEASE = env.LOAD_MIX_BY_RELEASE
PACE = env.LOAD_PACE
CHUNK_BYTES = env.LOAD_CHUNK_BYTES
THINK_TIME = env.LOAD_THINK_TIME
CREATOR_WEIGHT = env.LOAD_CREATOR_WEIGHT
VIEWER_WEIGHT = env.LOAD_VIEWER_WEIGHT
RECORD_DIR = env.LOAD_RECORD_DIR
SHAPE = env.LOAD_SHAPE
PHASES = env.LOAD_PHASES
POLL_INTERVAL = env.LOAD_POLL_INTERVAL
POLL_TIMEOUT = env.LOAD_POLL_TIMEOUT
REQUEST_TIMEOUT = env.LOAD_REQUEST_TIMEOUT
ON_GIVE_UP = env.LOAD_ON_GIVE_UP
PROGRESS_FILE = env.LOAD_PROGRESS_FILE
TRACE_SAMPLE_RATIO = env.LOAD_TRACE_SAMPLE_RATIO
SERVICE_TRACE_SAMPLE_RATIO = env.ENV_TRACE_SAMPLE_RATIO
DEFAULT_TRACE_SAMPLE_RATIO = 0.1

ENV_VARS = (
    SEED, RUN_ID, RETRY_POLICY, RETRY_MAX_ATTEMPTS, RETRY_BASE, RETRY_CAP, CANCEL_RATE, MIX, MIX_BY_RELEASE, PACE,
    CHUNK_BYTES, THINK_TIME, CREATOR_WEIGHT, VIEWER_WEIGHT, RECORD_DIR, SHAPE, PHASES, POLL_INTERVAL,
    POLL_TIMEOUT, REQUEST_TIMEOUT, ON_GIVE_UP, TRACE_SAMPLE_RATIO, PROGRESS_FILE,
)
ON_GIVE_UP_CHOICES = ("complete", "abandon")
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9]{1,16}$")
MAX_CHUNK_BYTES = 256 * 1024


class SettingsError(ValueError):
    """An environment variable with a value the load generator cannot use; names the variable."""


@dataclass(frozen=True)
class LoadSettings:
    seed: int = 1
    run_id: str = ""
    retry: RetryPolicy = RetryPolicy()
    cancel_rate: float = 0.02
    mix: CohortMix = CohortMix()
    # Release variant → the mix a creator in that variant draws from (an uneven rollout); others use ``mix``.
    mix_by_release: Mapping[str, CohortMix] = field(default_factory=dict)
    pace: float = 1.0
    chunk_bytes: int = 16384
    think_time_s: tuple[float, float] = (0.5, 2.0)
    creator_weight: int = 4
    viewer_weight: int = 1
    record_dir: str = ""
    shape: str = "none"
    phases: str = ""
    poll_interval_s: float = 0.2
    poll_timeout_s: float = 30.0
    request_timeout_s: float = 10.0
    on_give_up: str = "complete"
    trace_sample_ratio: float = 0.1
    progress_file: str = ""


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def _number(env, name, default, kind=float, low=None, high=None):
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={brief(raw)} is not {'an integer' if kind is int else 'a number'}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingsError(f"{name}={brief(raw)} must be {bounds}")
    return value


def _seconds(text: str) -> float:
    """A duration (``500ms``, ``2s``) or a bare number of seconds (``0``, ``1.5``)."""
    try:
        value = float(text)
    except ValueError:
        return parse_duration(text)
    return parse_duration(value)


def _duration(env, name, default):
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return _seconds(raw)
    except DurationError as e:
        raise SettingsError(f"{name}: {e}") from None


def _think_time(env) -> tuple[float, float]:
    raw = _get(env, THINK_TIME)
    if raw is None:
        return LoadSettings.think_time_s
    low_text, sep, high_text = raw.partition("-")
    try:
        low = _seconds(low_text)
        high = _seconds(high_text) if sep else low
    except DurationError as e:
        raise SettingsError(f"{THINK_TIME}={brief(raw)} is not MIN-MAX (e.g. 500ms-2s): {e}") from None
    if high < low:
        raise SettingsError(f"{THINK_TIME}={brief(raw)}: the maximum is below the minimum")
    return low, high


def from_env(env: Mapping[str, str] | None = None) -> LoadSettings:
    """Settings from the environment (``os.environ`` by default); SettingsError names a bad variable."""
    env = os.environ if env is None else env
    from loadtests.profiles import SHAPES, ShapeError, parse_phases

    run_id = _get(env, RUN_ID) or secrets.token_hex(4)
    if not _RUN_ID_PATTERN.match(run_id):
        raise SettingsError(f"{RUN_ID}={brief(run_id)} must be 1-16 letters or digits")
    try:
        retry = RetryPolicy(
            kind=_get(env, RETRY_POLICY) or "backoff",
            max_attempts=_number(env, RETRY_MAX_ATTEMPTS, 4, int, 1, 100),
            base_s=_duration(env, RETRY_BASE, 0.05),
            cap_s=_duration(env, RETRY_CAP, 1.0),
        )
    except RetryPolicyError as e:
        raise SettingsError(f"{RETRY_POLICY}: {e}") from None
    try:
        mix = parse_mix(env.get(MIX, ""))
    except CohortMixError as e:
        raise SettingsError(f"{MIX}: {e}") from None
    try:
        mix_by_release = parse_mix_by_release(env.get(MIX_BY_RELEASE, ""), mix)
    except CohortMixError as e:
        raise SettingsError(f"{MIX_BY_RELEASE}: {e}") from None
    shape = _get(env, SHAPE) or "none"
    if shape not in ("none",) + SHAPES:
        raise SettingsError(f"{SHAPE}={brief(shape)}: expected none or one of {', '.join(SHAPES)}")
    phases = _get(env, PHASES) or ""
    if shape == "phased":
        try:
            parse_phases(phases)
        except ShapeError as e:
            raise SettingsError(f"{PHASES}: {e}") from None
    on_give_up = _get(env, ON_GIVE_UP) or "complete"
    if on_give_up not in ON_GIVE_UP_CHOICES:
        raise SettingsError(f"{ON_GIVE_UP}={brief(on_give_up)}: expected one of {', '.join(ON_GIVE_UP_CHOICES)}")
    creator_weight = _number(env, CREATOR_WEIGHT, 4, int, 0)
    viewer_weight = _number(env, VIEWER_WEIGHT, 1, int, 0)
    if creator_weight + viewer_weight == 0:
        raise SettingsError(f"{CREATOR_WEIGHT} and {VIEWER_WEIGHT} are both 0: no user would run")
    return LoadSettings(
        seed=_number(env, SEED, 1, int),
        run_id=run_id,
        retry=retry,
        cancel_rate=_number(env, CANCEL_RATE, 0.02, float, 0.0, 1.0),
        mix=mix,
        mix_by_release=mix_by_release,
        pace=_number(env, PACE, 1.0, float, 0.0),
        chunk_bytes=_number(env, CHUNK_BYTES, 16384, int, 1, MAX_CHUNK_BYTES),
        think_time_s=_think_time(env),
        creator_weight=creator_weight,
        viewer_weight=viewer_weight,
        record_dir=_get(env, RECORD_DIR) or "",
        shape=shape,
        phases=phases,
        poll_interval_s=_duration(env, POLL_INTERVAL, 0.2),
        poll_timeout_s=_duration(env, POLL_TIMEOUT, 30.0),
        request_timeout_s=_duration(env, REQUEST_TIMEOUT, 10.0) or 10.0,
        on_give_up=on_give_up,
        trace_sample_ratio=_number(env, TRACE_SAMPLE_RATIO,
                                   _number(env, SERVICE_TRACE_SAMPLE_RATIO, DEFAULT_TRACE_SAMPLE_RATIO, float, 0.0, 1.0),
                                   float, 0.0, 1.0),
        progress_file=_get(env, PROGRESS_FILE) or "",
    )


_current: LoadSettings | None = None


def mix_for(settings: LoadSettings, release: str | None) -> CohortMix:
    """The mix a creator draws from: its release variant's, when the settings give one, else the run's."""
    return settings.mix_by_release.get(release or "", settings.mix)


def current() -> LoadSettings:
    """This process's settings, read from the environment once (the run ID must not change)."""
    global _current
    if _current is None:
        _current = from_env()
    return _current
