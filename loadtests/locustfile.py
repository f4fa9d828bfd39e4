"""Entry point Locust loads: ``locust -f loadtests/locustfile.py``.

Runs headless (``obslab load``), with the web UI, and distributed (``--master`` / ``--worker``,
as docker compose runs it). Everything is configured by ``OBSLAB_LOAD_*`` environment variables
(docs/load.md), which every process of a distributed run must share. ``OBSLAB_LOAD_SHAPE`` picks
the load shape; unset, Locust's own ``--users``/``--spawn-rate`` apply.
"""

import sys
from pathlib import Path

# Locust imports this file by path; make the project importable when it is not installed.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from loadtests import settings  # noqa: E402

try:
    _settings = settings.current()
except settings.SettingsError as error:
    sys.exit(f"error: {error}")

from loadtests.shapes import shape_class  # noqa: E402

if _settings.creator_weight:
    from loadtests.creator import CreatorUser  # noqa: E402,F401
if _settings.viewer_weight:
    from loadtests.viewer import ViewerUser  # noqa: E402,F401

# Locust runs the one LoadTestShape class it finds in this module, if any.
if _settings.shape != "none":
    LoadShape = shape_class(_settings.shape)

if _settings.progress_file:
    from locust import events  # noqa: E402

    from loadtests.progress import start_progress_writer  # noqa: E402

    @events.init.add_listener
    def _write_progress(environment, **_kwargs):
        start_progress_writer(environment, _settings.progress_file)
