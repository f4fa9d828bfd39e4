"""The locustfile a drill runs: the lab's creator and viewer users (``loadtests/``), plus client
behaviours a drill emulates that the standard users do not have.

``OBSLAB_DRILL_AUTO_CANCEL=APP_VERSION:NET|NET:AFTER`` (e.g. ``5.5.0-beta:3g|4g:2s``): creators on
that app version and network cancel their own upload once it has run longer than AFTER — a
client bug, not a user's choice, which the publish-success SLI nonetheless excludes as a
cancellation. Everything else is configured by the ``OBSLAB_LOAD_*`` variables (docs/load.md).
"""

import os
import sys
import time
from pathlib import Path

# Locust imports this file by path; make the project importable when it is not installed.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from loadtests import settings  # noqa: E402

try:
    _settings = settings.current()
except settings.SettingsError as error:
    sys.exit(f"error: {error}")

import gevent  # noqa: E402

from loadtests import creator as _creator  # noqa: E402  (module import: Locust must not see the base class)
from loadtests.cohorts import chunk_pause_s  # noqa: E402
from loadtests.shapes import shape_class  # noqa: E402
from contract.durations import parse_duration  # noqa: E402

AUTO_CANCEL_ENV = "OBSLAB_DRILL_AUTO_CANCEL"


def parse_auto_cancel(text: str | None) -> tuple[str, frozenset[str], float] | None:
    if not text:
        return None
    app_version, nets, after = text.split(":")
    return app_version, frozenset(n for n in nets.split("|") if n), parse_duration(after)


AUTO_CANCEL = parse_auto_cancel(os.environ.get(AUTO_CANCEL_ENV))


if _settings.creator_weight:
    class DrillCreatorUser(_creator.CreatorUser):
        """A creator whose app may cancel a slow upload by itself (see AUTO_CANCEL_ENV)."""

        def _run_flow(self, attempt, cohort, cancel_before_chunk):
            rule = AUTO_CANCEL
            if rule is None or cohort.app_version != rule[0] or (rule[1] and cohort.network_type not in rule[1]):
                return super()._run_flow(attempt, cohort, cancel_before_chunk)
            deadline = time.monotonic() + rule[2]
            self._create(attempt, cohort)
            chunk_bytes = min(_creator.SETTINGS.chunk_bytes, self.max_chunk_bytes)
            gave_up = False
            for index in range(cohort.chunk_count):
                if index == cancel_before_chunk or time.monotonic() >= deadline:
                    self._cancel(attempt)
                if not self._send_chunk(attempt, index, chunk_bytes):
                    gave_up = True
                    if _creator.SETTINGS.on_give_up == "abandon":
                        raise _creator.FlowOver("abandoned", f"chunk {index}: retries exhausted")
                    break
                gevent.sleep(chunk_pause_s(cohort.network_type, chunk_bytes, _creator.SETTINGS.pace, self.rng))
            self._complete(attempt, gave_up)

if _settings.viewer_weight:
    from loadtests.viewer import ViewerUser  # noqa: E402,F401

if _settings.shape != "none":
    LoadShape = shape_class(_settings.shape)
