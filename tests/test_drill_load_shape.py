"""A drill's load shape is laid over the drill's own duration, at every speed.

The profile is rebuilt exactly as the drill's Locust builds it: from the command line the drill
starts (``--users``, ``--spawn-rate``, ``--run-time``) and the ``OBSLAB_LOAD_*`` environment it sets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import settings as load_settings
from loadtests.profiles import build_profile
from toolkit.drills.clock import PAUSE_BUDGET_S
from toolkit.drills.load import load_command, load_env
from toolkit.drills.schema import load_catalogue
from toolkit.drills.state import RunDir, RunState


def _profile(drill_id: str, speed: float, tmp_path: Path):
    drill = load_catalogue()[drill_id]
    state = RunState(run_id="r", drill_id=drill_id, seed=1, speed=speed, url="http://127.0.0.1:1",
                     data_dir=str(tmp_path), started_at=0.0, duration_s=drill.setup.duration_s / speed)
    env = load_env(drill, state, RunDir(tmp_path / "run"))
    argv = load_command(drill, state)

    def option(name):
        return argv[argv.index(name) + 1]

    settings = load_settings.from_env(env)  # the environment must be one the load generator accepts
    profile = build_profile(settings.shape, int(option("--users")), float(option("--spawn-rate")),
                            float(option("--run-time").rstrip("s")), settings.phases)
    return drill, state, profile


@pytest.mark.parametrize("speed", [1, 2, 5, 10])
def test_the_async_migration_spike_falls_inside_the_drill(tmp_path, speed):
    drill, state, profile = _profile("async-migration", speed, tmp_path)
    users, wall = drill.setup.load.users, state.duration_s
    base = profile.users_at(0.1 * wall)
    assert base < users
    assert profile.users_at(0.5 * wall) == users, "the spike must come in the middle of the drill"
    assert profile.users_at(0.39 * wall) == base and profile.users_at(0.61 * wall) == base
    assert profile.users_at(0.95 * wall) == base
    # Still bounded: the load never outlives the drill plus its pause budget.
    assert profile.total_s <= wall + PAUSE_BUDGET_S + 1


@pytest.mark.parametrize("drill_id", sorted(load_catalogue()))
def test_every_drill_has_its_peak_load_while_it_runs(tmp_path, drill_id):
    drill, state, profile = _profile(drill_id, 10, tmp_path)
    wall = state.duration_s
    assert max(profile.users_at(wall * i / 100) for i in range(100)) == drill.setup.load.users
