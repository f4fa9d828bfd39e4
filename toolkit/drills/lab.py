"""Finding a running lab and talking to its control API (faults and flags).

A lab is found by its data directory (default ``.obslab``; the service's own files —
``admin-token``, ``events/`` — are there or in its ``data/`` subdirectory, where
``obslab serve`` puts them by default), its URL (``--url``, else ``<data-dir>/lab.json``
if a launcher wrote one, else the default port 8000) and its admin token
(``OBSLAB_ADMIN_TOKEN``, else the ``admin-token`` file).
Every failure is a ``LabError`` whose message is one line naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from contract.events import FLAGS
from toolkit.drills.schema import BackgroundFault, Fault

__all__ = [
    "LabError",
    "Lab",
    "ControlClient",
    "find_lab",
    "fault_name",
    "background_fault_name",
    "fault_body",
    "pace_prometheus",
    "flag_body",
    "TOKEN_ENV",
    "ACTOR_ENV",
    "DEFAULT_ACTOR",
    "PRIVATE_AUDIT_HEADER",
    "PRIVATE_AUDIT_VALUE",
    "DEFAULT_URL",
    "DEFAULT_DATA_DIR",
]

TOKEN_ENV = "OBSLAB_ADMIN_TOKEN"
# Who the service's audit events name for a drill's visible changes (flag rollouts, as a real
# release tool would); the runner passes it on to the drill's scheduler. It names no drill.
ACTOR_ENV = "OBSLAB_ACTOR"
DEFAULT_ACTOR = "release-bot"
# Header asking the service to keep a fault change out of its event log: a drill's injected fault
# is not something a real system logs; the drill keeps its own record in its run directory.
PRIVATE_AUDIT_HEADER = "X-Obslab-Audit"
PRIVATE_AUDIT_VALUE = "private"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DATA_DIR = ".obslab"
TOKEN_FILE = "admin-token"
LAB_FILE = "lab.json"
_TIMEOUT_S = 5.0


class LabError(RuntimeError):
    """The lab cannot be reached or refused a request; one line for the user."""


class LabUnreachable(LabError):
    """Nothing answers at the lab's URL (connection refused): retrying does not help."""


@dataclass(frozen=True)
class Lab:
    data_dir: Path
    url: str
    token: str
    prometheus_url: str | None = None  # the lab's Prometheus (from lab.json), when it runs one
    slo_spec: str | None = None  # the SLO spec the lab runs with (from lab.json)
    profile: str = "lab"  # the profile the lab's Prometheus rules are generated for (from lab.json)

    @property
    def service_dir(self) -> Path:
        """Where the service keeps its files: the data dir itself or its ``data/`` subdirectory."""
        for candidate in (self.data_dir, self.data_dir / "data"):
            if (candidate / "events").is_dir() or (candidate / TOKEN_FILE).is_file():
                return candidate
        return self.data_dir

    @property
    def events_dir(self) -> Path:
        return self.service_dir / "events"

    @property
    def drills_dir(self) -> Path:
        return self.data_dir / "drills"


def find_lab(data_dir: str | Path = DEFAULT_DATA_DIR, url: str | None = None, token: str | None = None) -> Lab:
    """Resolve data dir, URL and token; no network traffic yet."""
    d = Path(data_dir)
    info: dict[str, Any] = {}
    lab_file = d / LAB_FILE
    if lab_file.is_file():
        try:
            info = json.loads(lab_file.read_text())
        except (OSError, ValueError):
            info = {}
    resolved_url = (url or info.get("url") or DEFAULT_URL).rstrip("/")
    resolved_token = token or os.environ.get(TOKEN_ENV)
    if not resolved_token:
        for token_file in (Path(info["token_file"]) if info.get("token_file") else None, d / TOKEN_FILE,
                           d / "data" / TOKEN_FILE):
            if token_file is not None and token_file.is_file():
                resolved_token = token_file.read_text().strip()
                break
    if not resolved_token:
        raise LabError(f"no admin token: set {TOKEN_ENV} or start the lab with data dir {d} "
                       f"(it writes {d / 'data' / TOKEN_FILE})")
    same_lab = not url or url.rstrip("/") == (info.get("url") or "").rstrip("/")
    # lab.json's Prometheus and spec belong to the lab it describes, not to a service named by --url.
    return Lab(d, resolved_url, resolved_token, (info.get("prometheus_url") or None) if same_lab else None,
               (info.get("spec") or None) if same_lab else None, str(info.get("profile") or "lab"))


def pace_prometheus(data_dir: str | Path, api_url: str, prometheus_url: str | None, spec_path: str | None,
                    profile: str, speed: float) -> str | None:
    """Set the lab's Prometheus to a scenario's speed: rewrite its rules and scrape interval for the
    profile run ``speed`` times faster (``toolkit.slo.scenario.at_speed``) and reload it.

    None when done or nothing to do (no Prometheus; speed 1 with no config of ours); else why it could
    not be paced (a Prometheus this lab does not configure, e.g. docker compose's, or one that refused
    the reload): the drill still runs, and its report says which surface saw the page."""
    from urllib.parse import urlparse

    from toolkit.slo.prometheus_config import (CONFIG_FILE, PrometheusReloadError, reload_prometheus,
                                               write_prometheus_config)

    if not prometheus_url:
        return None
    prom_dir = Path(data_dir) / "prometheus"
    if not (prom_dir / CONFIG_FILE).is_file() or not spec_path:
        if speed == 1:
            return None
        return (f"the lab's Prometheus ({prometheus_url}) keeps its speed-1 rules: this lab does not configure "
                f"it (no {prom_dir / CONFIG_FILE}), so its alerts may not fire at speed ×{speed:g}")
    write_prometheus_config(prom_dir, Path(spec_path), profile, urlparse(api_url).netloc, speed=speed)
    try:
        reload_prometheus(prometheus_url)
    except PrometheusReloadError as e:
        return str(e)
    return None


def fault_name(run_id: str) -> str:
    """The name a drill's fault has in the lab's control API: derived from the run, naming neither the
    drill nor the fault (the name reaches the admin request's span as its URL path)."""
    return f"x{hashlib.blake2b(run_id.encode(), digest_size=5).hexdigest()}"


def background_fault_name(run_id: str, index: int) -> str:
    return f"{fault_name(run_id)}-{index + 1}"


def fault_body(fault: Fault | BackgroundFault, duration_s: float | None = None) -> dict[str, Any]:
    """The control API's JSON for a fault (``PUT /admin/faults/{name}``, demo_service/faults.py).

    ``duration_s`` makes the service expire the fault by itself, so a fault cannot
    outlive a scheduler that died.
    """
    selector = {k: [v] for k, v in fault.selector.items() if k != "percentage"}
    body: dict[str, Any] = {"kind": fault.kind, "target": fault.target, "selector": selector,
                            "percentage": fault.selector.get("percentage", 100.0), "params": dict(fault.params)}
    if fault.route:
        body["route"] = fault.route
    if duration_s is not None:
        body["duration_s"] = max(duration_s, 0.001)
    return body


def flag_body(name: str, variant: str, percent: float) -> dict[str, Any]:
    """The control API's JSON for a flag rollout (``PUT /admin/flags/{name}``, demo_service/flags.py)."""
    return {"default": FLAGS[name][0], "rollout": {variant: percent}}


class ControlClient:
    """The lab's admin API: bearer token, JSON in and out."""

    def __init__(self, lab: Lab, session: requests.Session | None = None, actor: str = DEFAULT_ACTOR):
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.lab = lab
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {lab.token}"
        self.session.headers["X-Actor"] = actor  # names who changed a fault or flag in the audit event
        # Every control call is idempotent (PUT/DELETE by name, GET), so a pooled keep-alive
        # connection the busy server closed, or a refused connect, is retried rather than fatal.
        retry = Retry(total=4, connect=4, read=2, status=0, backoff_factor=0.3,
                      allowed_methods=frozenset({"GET", "PUT", "DELETE"}), raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))

    def _call(self, method: str, path: str, body: dict | None = None, private: bool = False) -> Any:
        url = f"{self.lab.url}{path}"
        headers = {PRIVATE_AUDIT_HEADER: PRIVATE_AUDIT_VALUE} if private else None
        try:
            resp = self.session.request(method, url, json=body, headers=headers, timeout=_TIMEOUT_S)
        except requests.ConnectionError:
            raise LabUnreachable(f"no lab running at {self.lab.url} (start one with `obslab lab` or pass --url)") from None
        except requests.Timeout:
            raise LabError(f"the lab at {self.lab.url} did not answer {method} {path} within {_TIMEOUT_S:g}s") from None
        if resp.status_code in (401, 403):
            raise LabError(f"the lab at {self.lab.url} refused the admin token (HTTP {resp.status_code}); "
                           f"check {TOKEN_ENV} or {self.lab.service_dir / TOKEN_FILE}")
        if resp.status_code >= 400:
            raise LabError(f"{method} {path} failed: HTTP {resp.status_code}: {_error_message(resp)}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def check(self) -> None:
        """Reachable and the token works."""
        self.list_faults()

    def list_faults(self) -> Any:
        return self._call("GET", "/admin/faults")

    def put_fault(self, name: str, body: dict[str, Any]) -> Any:
        return self._call("PUT", f"/admin/faults/{name}", body, private=True)

    def delete_fault(self, name: str) -> None:
        try:
            self._call("DELETE", f"/admin/faults/{name}", private=True)
        except LabError as e:
            if "HTTP 404" not in str(e):
                raise

    def put_flag(self, name: str, body: dict[str, Any]) -> Any:
        return self._call("PUT", f"/admin/flags/{name}", body)

    def delete_flag(self, name: str) -> None:
        try:
            self._call("DELETE", f"/admin/flags/{name}")
        except LabError as e:
            if "HTTP 404" not in str(e):
                raise

    def put_shed(self, request_class: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("PUT", f"/admin/shed/{request_class}", body or {})

    def delete_shed(self, request_class: str) -> None:
        try:
            self._call("DELETE", f"/admin/shed/{request_class}")
        except LabError as e:
            if "HTTP 404" not in str(e):
                raise

    def metrics_text(self) -> str:
        try:
            resp = self.session.get(f"{self.lab.url}/metrics", timeout=_TIMEOUT_S)
        except requests.RequestException:
            raise LabError(f"cannot read {self.lab.url}/metrics") from None
        resp.raise_for_status()
        return resp.text


def _error_message(resp: requests.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return err.get("message") or resp.text[:200]
    except (ValueError, AttributeError):
        return resp.text[:200].strip() or resp.reason
