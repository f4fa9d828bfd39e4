"""Locust load for obslab: creator and viewer users, load shapes, retry policies, the client record.

Locust loads ``loadtests/locustfile.py`` (``LOCUSTFILE`` below); settings come from
``OBSLAB_LOAD_*`` environment variables (``loadtests.settings``, docs/load.md).
"""

from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

__all__ = ["LOCUSTFILE"]
