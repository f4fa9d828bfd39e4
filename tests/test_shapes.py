"""Load shapes as pure profiles: user counts over time, phases, end of run."""

import pytest

from loadtests.profiles import (
    SHAPES,
    Phase,
    Profile,
    ShapeError,
    build_profile,
    parse_phases,
)


def test_steady_holds_then_stops():
    p = Profile("steady", users=20, spawn_rate=5, duration_s=60)
    assert p.tick(0) == (20, 5) and p.tick(59.9) == (20, 5)
    assert p.tick(60) is None


def test_ramp_rises_linearly_then_holds():
    p = Profile("ramp", users=100, spawn_rate=10, duration_s=100)
    counts = [p.users_at(t) for t in range(0, 100, 5)]
    assert counts == sorted(counts), "a ramp never goes down"
    assert p.users_at(0) == 1
    assert p.users_at(37.5) == 50  # half of the 75 s ramp
    assert p.users_at(75) == 100 and p.users_at(99) == 100


def test_spike_bursts_in_the_middle_fifth_only():
    p = Profile("spike", users=50, spawn_rate=2, duration_s=100)
    assert p.users_at(10) == 10 and p.users_at(39.9) == 10
    assert p.tick(40) == (50, 50.0)  # arrives at once
    assert p.users_at(59.9) == 50 and p.users_at(60) == 10


def test_diurnal_is_quiet_at_night_and_peaks_at_midday():
    p = Profile("diurnal", users=40, spawn_rate=5, duration_s=240)
    assert p.users_at(0) == 8  # 20 % trough
    assert p.users_at(120) == 40
    assert p.users_at(60) == pytest.approx(24, abs=1)
    assert p.users_at(239) <= 9
    first_half = [p.users_at(t) for t in range(0, 121, 10)]
    assert first_half == sorted(first_half)


def test_phased_follows_its_phases_and_ends_after_the_last():
    phases = parse_phases("30s:10,1m:40@20,30s:0", default_spawn_rate=5)
    assert phases == (Phase(30, 10, 5), Phase(60, 40, 20), Phase(30, 0, 5))
    p = build_profile("phased", users=None, spawn_rate=5, duration_s=None, phases="30s:10,1m:40@20,30s:0")
    assert p.total_s == 120 and p.users == 40
    assert p.tick(0) == (10, 5) and p.tick(30) == (40, 20) and p.tick(95) == (0, 5)
    assert p.tick(120) is None


@pytest.mark.parametrize("text", ["", "30s", "30s:x", "xx:10", "0s:10", "30s:10@0", ",,"])
def test_bad_phases_are_refused_with_the_expected_form(text):
    with pytest.raises(ShapeError, match="DURATION:USERS|no phases|positive"):
        parse_phases(text)


def test_profiles_take_locust_common_options_with_defaults():
    p = build_profile("steady", users=None, spawn_rate=None, duration_s=None)
    assert (p.users, p.spawn_rate, p.duration_s) == (1, 1.0, 600.0)


def test_phased_without_phases_is_an_error():
    with pytest.raises(ShapeError, match="needs phases"):
        Profile("phased", users=1, spawn_rate=1, duration_s=10)
