"""JSON for the tiles, charts and cohort table: ``/api/info``, ``/api/snapshot``, ``/api/series``, ``/api/cohorts``;
the on-call panel: ``/api/oncall``."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from flask import Blueprint, current_app, jsonify, request

from contract.events import COHORT_DIMENSIONS, FLAGS
from contract.durations import DurationError
from toolkit.slo.spec import load_spec
from toolkit.lab.web import snapshot as snap
from toolkit.lab.web.explorer import event_files

__all__ = ["bp", "as_of_now", "drill_speed", "prometheus_alerts", "prometheus_version", "prometheus_alerts_page"]

bp = Blueprint("api", __name__, url_prefix="/api")

_cache_lock = threading.Lock()


def as_of_now(settle_s: float, now: datetime | None = None) -> datetime:
    """The as-of time of a refresh: whole seconds, settle_s behind the clock."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(seconds=settle_s)).replace(microsecond=0)


def prometheus_alerts(prometheus_url: str) -> list[dict] | None:
    """Alerts Prometheus evaluates from the lab rules; None if it does not answer."""
    try:
        resp = requests.get(f"{prometheus_url.rstrip('/')}/api/v1/alerts", timeout=2)
        resp.raise_for_status()
        alerts = resp.json()["data"]["alerts"]
    except (requests.RequestException, KeyError, ValueError):
        return None
    return [{"name": a["labels"].get("alertname", "?"), "severity": a["labels"].get("severity", ""),
             "state": a.get("state", ""), "slo": a["labels"].get("slo", "")} for a in alerts]


def prometheus_version(prometheus_url: str) -> str | None:
    """The version Prometheus reports (``/api/v1/status/buildinfo``), e.g. "2.42.0"; None if it does not answer."""
    try:
        resp = requests.get(f"{prometheus_url.rstrip('/')}/api/v1/status/buildinfo", timeout=2)
        resp.raise_for_status()
        return str(resp.json()["data"]["version"])
    except (requests.RequestException, KeyError, ValueError, TypeError):
        return None


def prometheus_alerts_page(prometheus_url: str, version: str) -> str:
    """The alerts page of this Prometheus: ``/classic/alerts`` on 2.x (Debian's 2.x ships only the classic
    UI, where ``/alerts`` answers 404), ``/alerts`` from 3.0 on (the classic UI is gone)."""
    major = version.lstrip("v").split(".")[0]
    path = "/classic/alerts" if major.isdigit() and int(major) < 3 else "/alerts"
    return prometheus_url.rstrip("/") + path


def _prometheus_link(prometheus_url: str) -> tuple[str, str]:
    """The header link to Prometheus's alerts; its root page while its version is not known yet (asked again
    at the next page load)."""
    cache = current_app.extensions.setdefault("obslab_prometheus_version", {})
    version = cache.get(prometheus_url) or prometheus_version(prometheus_url)
    if version is None:
        return "Prometheus", prometheus_url.rstrip("/") + "/"
    cache[prometheus_url] = version
    return f"Prometheus {version} alerts", prometheus_alerts_page(prometheus_url, version)


def drill_speed(data_dir, profile: str) -> float:
    """The scenario speed of a drill running in the lab's data directory, when it paces this profile; else 1.
    While it runs, the lab's alert windows (Prometheus's rules and these views alike) are in its time."""
    from toolkit.lab.web.drills import drills_available

    if not drills_available():
        return 1.0
    from toolkit.drills.runner import running_drill

    state = running_drill(Path(data_dir) / "drills")
    return float(state.speed) if state is not None and state.profile == profile else 1.0


def _compute(fn):
    """Run fn(config, data, window) on the events as of now; one refresh's requests share one load.

    DuckDB connections are not shared between threads, so figures are computed under one lock.
    """
    config = current_app.config["OBSLAB_DASHBOARD"]
    clock = current_app.config.get("OBSLAB_CLOCK")  # tests pin the clock
    as_of = as_of_now(config.settle_s, clock() if clock else None)
    key = request.args.get("window", "lab")
    cache = current_app.extensions.setdefault("obslab_cache", {})
    speed = drill_speed(config.data_dir, config.profile)
    with _cache_lock:
        data = cache.get("data")
        if data is None or data.as_of != as_of or data.speed != speed:
            if data is not None:
                data.close()
            spec = cache.get("spec") or load_spec(config.spec_path)
            cache["spec"] = spec
            cache["data"] = data = snap.LabData(event_files(config.files_dir), spec, config.profile, as_of,
                                                speed=speed)
        try:
            window = snap.window_for(key, as_of, config.started_at, data.first_event_at)
        except (DurationError, ValueError) as e:
            raise _BadRequest("window", str(e)) from None
        return fn(config, data, window)


class _BadRequest(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@bp.errorhandler(_BadRequest)
def _bad_request(e: _BadRequest):
    return jsonify(error={"code": "invalid", "field": e.field, "message": str(e)}), 422


@bp.get("/info")
def info():
    config = current_app.config["OBSLAB_DASHBOARD"]
    return jsonify(
        profile=config.profile, spec=str(config.spec_path), events_path=str(config.events_dir),
        refresh_s=config.refresh_s, settle_s=config.settle_s,
        started_at=snap.iso(config.started_at) if config.started_at else None,
        links=[{"name": n, "url": u} for n, u in config.links
               + ((_prometheus_link(config.prometheus_url),)
                  if config.prometheus_url and config.link_prometheus_alerts else ())],
        admin_token_file=str(config.admin_token_file) if config.admin_token_file else None,
        alerts_source="Prometheus" if config.prometheus_url else "events (toolkit burn-rate evaluation)",
        dimensions=list(COHORT_DIMENSIONS) + list(FLAGS),
    )


@bp.get("/snapshot")
def snapshot():
    config = current_app.config["OBSLAB_DASHBOARD"]
    alerts = prometheus_alerts(config.prometheus_url) if config.prometheus_url else None
    status = "not configured" if not config.prometheus_url else ("unreachable" if alerts is None else "answered")
    return jsonify(_compute(lambda config, data, window: data.snapshot(window, prometheus_alerts=alerts,
                                                                       prometheus_status=status)))


@bp.get("/series")
def series():
    return jsonify(_compute(lambda config, data, window: data.series(window)))


@bp.get("/cohorts")
def cohorts():
    dimension = request.args.get("dimension", "region")
    allowed = list(COHORT_DIMENSIONS) + list(FLAGS)
    if dimension not in allowed:
        raise _BadRequest("dimension", f"dimension {dimension!r} is not one of {', '.join(allowed)}")
    return jsonify(_compute(lambda config, data, window: data.cohorts(window, dimension)))


@bp.get("/oncall")
def oncall():
    """On-call and delivery figures (``toolkit.analysis.oncall.compute_oncall``, what ``obslab oncall`` prints) of
    the events as of now; the scope is the page's window (``lab``: all history, as ``obslab oncall`` without
    --since; ``5m``: as ``--last 5m``)."""
    from toolkit.analysis.oncall import compute_oncall
    from toolkit.drills.history import drill_faults

    def figures(config, data, window):
        if data.first_event_at is None or window.start >= window.end:
            return compute_oncall(data.events, data.spec, config.profile, synthetic=data.synthetic)  # nothing yet
        return compute_oncall(data.events, data.spec, config.profile, faults=drill_faults(config.data_dir / "drills"),
                              since=window.start, synthetic=data.synthetic)

    return jsonify(_compute(figures))
