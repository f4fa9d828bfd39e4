"""The ``obslab`` command line: a thin shell over the toolkit's library functions.

Each command group lives in its own module and registers itself on ``app``;
errors a user can cause end as one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib

from toolkit.cli.base import app

__all__ = ["app", "main"]

# One module per command group; each adds its commands to ``app`` on import.
COMMAND_MODULES = (
    "version",
    "serve",
    "lab",
    "dashboard",
    "top",
    "bench_overhead",
    "load",
    "reconcile",
    "rules",
    "slo",
    "dashboards",
    "events",
    "sli",
    "budget",
    "bench_sli",
    "bench_capacity",
    "bench_soak",
    "drill",
    "compare",
    "breakdown",
    "rollout",
    "story",
    "oncall",
    "plan",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"toolkit.cli.{_name}")


def main() -> None:
    _record_for_the_drill()
    app()


def _record_for_the_drill() -> None:
    """While a drill is active, its debrief shows the commands the learner ran (toolkit.drills.learner_path)."""
    import sys

    try:
        from toolkit.drills.learner_path import record_command

        record_command(sys.argv[1:])
    except Exception:  # noqa: BLE001 - the record is for the debrief; it must never stop the command itself
        pass
