"""Live totals for ``obslab load``'s progress bar: a small JSON file rewritten every second.

Only the process that owns the aggregate statistics writes it (the single process, or the master
of a distributed run); workers do not. Each write goes to a temporary file renamed over the old
one, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import time

import gevent
from locust.runners import WorkerRunner

__all__ = ["start_progress_writer", "PROGRESS_INTERVAL_S"]

PROGRESS_INTERVAL_S = 1.0


def _snapshot(runner) -> dict:
    total = runner.stats.total
    return {
        "time": time.time(),
        "state": str(runner.state),
        "users": runner.user_count,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "requests_per_s": round(total.current_rps, 2),
        "failures_per_s": round(total.current_fail_per_sec, 2),
    }


def _write(path: str, data: dict) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(data, f)
    os.replace(temporary, path)


def start_progress_writer(environment, path: str) -> None:
    """Spawn the writer greenlet unless this process is a worker."""
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return

    def loop() -> None:
        while True:
            try:
                _write(path, _snapshot(runner))
            except OSError:
                pass  # progress is a convenience; the run goes on without it
            gevent.sleep(PROGRESS_INTERVAL_S)

    gevent.spawn(loop)
