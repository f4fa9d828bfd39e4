"""Drills panel: list, start, hint, answer, report and stop, over the drills library."""

from __future__ import annotations

import importlib.util

from flask import Blueprint, jsonify

__all__ = ["bp"]

bp = Blueprint("drills", __name__, url_prefix="/api/drills")


def _runner_available() -> bool:
    return importlib.util.find_spec("toolkit.drills") is not None and \
        importlib.util.find_spec("toolkit.drills.runner") is not None


@bp.get("")
def index():
    if not _runner_available():
        return jsonify(available=False, reason="the drills library (toolkit.drills.runner) is not installed in this build",
                       drills=[], active=None)
    return jsonify(available=False, reason="drills panel not wired yet", drills=[], active=None)
