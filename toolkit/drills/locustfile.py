"""The locustfile a drill runs: the lab's creator and viewer users (``loadtests/``), plus client
behaviours a drill emulates that the standard users do not have.

``OBSLAB_DRILL_AUTO_CANCEL=APP_VERSION:NET|NET:AFTER`` (e.g. ``5.5.0-beta:3g|4g:2s``): creators on
that app version and network cancel their own upload once it has run longer than AFTER — a
client bug, not a user's choice, which the publish-success SLI nonetheless excludes as a
cancellation.

``OBSLAB_DRILL_REMOTE_CONFIG=PATH``: the clients' remote config, a JSON file the drill writes when the
learner switches the retry policy (``obslab drill mitigate retry-policy …``); each creator picks it up
before its next publish attempt, as an app picks up a config change. Everything else is configured by the
``OBSLAB_LOAD_*`` variables (docs/load.md).
"""

import dataclasses
import json
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

REMOTE_CONFIG_ENV = "OBSLAB_DRILL_REMOTE_CONFIG"
_remote_seen: dict[str, object] = {"mtime": None}


def apply_remote_config(path: str | None = os.environ.get(REMOTE_CONFIG_ENV)) -> bool:
    """Switch the clients' retry policy to the remote config's when it changed since the last look; True if
    it did. A file that cannot be read or holds a bad policy is reported and ignored (the clients keep theirs)."""
    from loadtests.retry import RetryPolicy, RetryPolicyError

    if not path:
        return False
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return False
    if mtime == _remote_seen["mtime"]:
        return False
    _remote_seen["mtime"] = mtime
    current = _creator.SETTINGS.retry
    try:
        config = json.loads(Path(path).read_text())
        retry = RetryPolicy(kind=config["retry_policy"], max_attempts=int(config.get("max_attempts") or
                                                                          current.max_attempts),
                            base_s=current.base_s, cap_s=current.cap_s)
    except (OSError, ValueError, TypeError, KeyError, RetryPolicyError) as error:
        print(f"remote config {path}: ignored ({error})", file=sys.stderr)
        return False
    _creator.SETTINGS = dataclasses.replace(_creator.SETTINGS, retry=retry)
    return True


if _settings.creator_weight:
    class DrillCreatorUser(_creator.CreatorUser):
        """A creator whose app may cancel a slow upload by itself (see AUTO_CANCEL_ENV)."""

        def _run_flow(self, attempt, cohort, cancel_before_chunk):
            apply_remote_config()
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
