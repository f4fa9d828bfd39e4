"""Retry policies: attempt caps, capped exponential backoff with full jitter, reproducibility."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtests.retry import RetryPolicy, RetryPolicyError


def test_none_never_retries_whatever_the_cap():
    policy = RetryPolicy("none", max_attempts=5)
    assert policy.max_attempts == 1
    assert policy.delay_s(1, random.Random(1)) is None


def test_immediate_retries_at_once_up_to_the_cap():
    policy = RetryPolicy("immediate", max_attempts=3)
    rng = random.Random(1)
    assert [policy.delay_s(k, rng) for k in (1, 2, 3)] == [0.0, 0.0, None]


def test_backoff_ceiling_doubles_then_caps():
    policy = RetryPolicy("backoff", max_attempts=10, base_s=0.1, cap_s=0.5)
    assert [policy.ceiling_s(k) for k in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert policy.ceiling_s(10_000) == 0.5  # no float overflow on absurd attempt numbers


@given(attempt=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_backoff_delay_is_full_jitter_within_the_ceiling(attempt, seed):
    policy = RetryPolicy("backoff", max_attempts=41, base_s=0.05, cap_s=2.0)
    delay = policy.delay_s(attempt, random.Random(seed))
    assert 0.0 <= delay <= policy.ceiling_s(attempt)


def test_backoff_jitter_spreads_over_the_whole_range():
    policy = RetryPolicy("backoff", max_attempts=10, base_s=1.0, cap_s=8.0)
    rng = random.Random(7)
    delays = [policy.delay_s(4, rng) for _ in range(2000)]  # ceiling 8 s
    assert min(delays) < 0.5 and max(delays) > 7.5
    assert 3.5 < sum(delays) / len(delays) < 4.5  # uniform(0, 8) has mean 4


def test_same_seed_same_delays():
    policy = RetryPolicy("backoff")
    a = [policy.delay_s(k, random.Random(3)) for k in (1, 2, 3)]
    b = [policy.delay_s(k, random.Random(3)) for k in (1, 2, 3)]
    assert a == b


def test_attempt_cap_counts_the_first_try():
    policy = RetryPolicy("backoff", max_attempts=4)
    assert [policy.may_retry(k) for k in (1, 2, 3, 4, 5)] == [True, True, True, False, False]


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "sometimes"}, "unknown retry policy"),
    ({"max_attempts": 0}, "at least 1"),
    ({"base_s": -1}, "must not be negative"),
])
def test_invalid_policies_say_what_is_wrong(kwargs, message):
    with pytest.raises(RetryPolicyError, match=message):
        RetryPolicy(**kwargs)


def test_attempt_numbers_start_at_one():
    with pytest.raises(RetryPolicyError, match="start at 1"):
        RetryPolicy().may_retry(0)
