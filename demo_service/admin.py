"""Control plane: ``/admin/faults``, ``/admin/flags`` and ``/admin/shed`` behind a bearer token, loopback-only by default.

Every change is stored in the shared state (reaching every worker within a second)
and recorded as an audit event (``fault_changed`` / ``flag_changed`` / ``shed_changed``) naming the actor,
never the token — except a fault change sent with ``X-Obslab-Audit: private``: a drill's
injected fault is not something a real system would log, so it stays out of the event log
and the drill keeps its own record (its run directory).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time

from flask import Blueprint, Flask, current_app, jsonify, request

from demo_service.api.uploads import json_object
from demo_service.controls import get_controls
from demo_service.errors import ApiError
from demo_service.faults import FaultSpecError, parse_fault
from demo_service.flags import FlagSpecError, default_spec, parse_flag
from demo_service.shedding import SHED_CLASSES, ShedSpecError, parse_shed
from demo_service.store import get_store
from demo_service.telemetry import get_telemetry
from contract.events import FLAGS

__all__ = ["bp", "init_app", "DEFAULT_ACTOR"]

bp = Blueprint("admin", __name__, url_prefix="/admin")
DEFAULT_ACTOR = "admin-api"
# A fault change with this header set to "private" is not written to the event log (a drill's record).
PRIVATE_AUDIT_HEADER = "X-Obslab-Audit"
_ACTOR_RE = re.compile(r"^[A-Za-z0-9 ._@:/-]{1,100}$")


def _is_loopback(addr: str | None) -> bool:
    try:
        return ipaddress.ip_address((addr or "").split("%")[0]).is_loopback
    except ValueError:
        return False


@bp.before_request
def _guard():
    if not current_app.config["ADMIN_ALLOW_REMOTE"] and not _is_loopback(request.remote_addr):
        raise ApiError(403, "forbidden", "the control plane accepts loopback clients only "
                                         "(set OBSLAB_ADMIN_ALLOW_REMOTE=1 to change that)")
    token = current_app.config["ADMIN_TOKEN"]
    if not token:
        raise ApiError(503, "admin_disabled", "no admin token is configured (OBSLAB_ADMIN_TOKEN)")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        err = ApiError(401, "unauthorized", "missing or wrong bearer token", "Authorization")
        raise err


@bp.after_request
def _www_authenticate(response):
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="obslab-admin"'
    return response


def _actor() -> str:
    _private()  # a bad audit header is refused before anything changes
    actor = request.headers.get("X-Actor", DEFAULT_ACTOR)
    if not _ACTOR_RE.match(actor):
        raise ApiError(400, "invalid_header", "X-Actor must be 1-100 characters of letters, digits and ._@:/- ",
                       "X-Actor")
    return actor


def _audit(event: str, actor: str, action: str, name: str, old, new) -> None:
    if not (event == "fault_changed" and _private()):
        get_telemetry().emit(event, actor=actor, change={"action": action, "name": name, "old": old, "new": new})
    get_controls().invalidate()


def _delete_control(kind: str, event: str, name: str, absent: str, field: str) -> None:
    """Remove the stored control ``kind``/``name`` and write its audit event; 404 (``absent``, naming
    ``field``) when none is stored."""
    actor = _actor()
    old = get_store().delete_control(kind, name)
    if old is None:
        raise ApiError(404, "not_found", absent, field)
    _audit(event, actor, "delete", name, old, None)


def _private() -> bool:
    value = request.headers.get(PRIVATE_AUDIT_HEADER)
    if value is None:
        return False
    if value != "private":
        raise ApiError(400, "invalid_header", f"{PRIVATE_AUDIT_HEADER} must be 'private'", PRIVATE_AUDIT_HEADER)
    return True


# --- faults ------------------------------------------------------------------------------------
def _fault_view(name: str, spec: dict) -> dict:
    return {"name": name, **spec}


@bp.get("/faults")
def list_faults():
    _, controls = get_store().load_controls()
    return jsonify({"faults": [_fault_view(n, s) for n, s in sorted(controls["fault"].items())]})


@bp.get("/faults/<name>")
def get_fault(name: str):
    spec = get_store().get_control("fault", name)
    if spec is None:
        raise ApiError(404, "not_found", f"no fault {name!r}", "name")
    return jsonify(_fault_view(name, spec))


@bp.put("/faults/<name>")
def put_fault(name: str):
    actor = _actor()
    body = json_object()
    now = time.time()
    try:
        fault = parse_fault(name, body, now=now)
    except FaultSpecError as e:
        raise ApiError(422, "invalid_fault", str(e), e.field) from None
    spec = fault.to_json()
    spec.pop("name")
    old = get_store().put_control("fault", name, spec, now)
    _audit("fault_changed", actor, "put", name, old, spec)
    return jsonify(_fault_view(name, spec))


@bp.delete("/faults/<name>")
def delete_fault(name: str):
    _delete_control("fault", "fault_changed", name, f"no fault {name!r}", "name")
    return jsonify({"deleted": [name]})


@bp.delete("/faults")
def delete_all_faults():
    actor = _actor()
    _, controls = get_store().load_controls()
    deleted = []
    for name in sorted(controls["fault"]):
        old = get_store().delete_control("fault", name)
        if old is not None:
            _audit("fault_changed", actor, "delete", name, old, None)
            deleted.append(name)
    return jsonify({"deleted": deleted})


# --- flags -------------------------------------------------------------------------------------
def _flag_name(name: str) -> str:
    if name not in FLAGS:
        raise ApiError(404, "not_found", f"no flag {name!r}; flags: {sorted(FLAGS)}", "name")
    return name


@bp.get("/flags")
def list_flags():
    specs = get_controls().flag_specs
    return jsonify({"flags": [(specs.get(n) or default_spec(n)).to_json() | {"variants": list(FLAGS[n])}
                              for n in FLAGS]})


@bp.get("/flags/<name>")
def get_flag(name: str):
    _flag_name(name)
    stored = get_store().get_control("flag", name)
    spec = parse_flag(name, stored) if stored else default_spec(name)
    return jsonify(spec.to_json() | {"variants": list(FLAGS[name])})


@bp.put("/flags/<name>")
def put_flag(name: str):
    _flag_name(name)
    actor = _actor()
    body = json_object()
    try:
        spec = parse_flag(name, body)
    except FlagSpecError as e:
        raise ApiError(422, "invalid_flag", str(e), e.field) from None
    stored = {"default": spec.default, "rollout": dict(spec.rollout)}
    old = get_store().put_control("flag", name, stored, time.time())
    _audit("flag_changed", actor, "put", name, old, stored)
    return jsonify(spec.to_json() | {"variants": list(FLAGS[name])})


@bp.delete("/flags/<name>")
def delete_flag(name: str):
    _flag_name(name)
    _delete_control("flag", "flag_changed", name, f"flag {name!r} is already at its default", "name")
    return jsonify(default_spec(name).to_json() | {"variants": list(FLAGS[name])})


# --- load shedding ------------------------------------------------------------------------------
def _shed_class(name: str) -> str:
    if name not in SHED_CLASSES:
        raise ApiError(404, "not_found", f"no request class {name!r} to shed; classes: {sorted(SHED_CLASSES)}",
                       "class")
    return name


@bp.get("/shed")
def list_shed():
    specs = get_controls().shed_specs
    return jsonify({"shed": [specs[n].to_json() for n in sorted(specs)],
                    "classes": dict(SHED_CLASSES)})


@bp.put("/shed/<name>")
def put_shed(name: str):
    _shed_class(name)
    actor = _actor()
    body = json_object(required=False)
    try:
        spec = parse_shed(name, body)
    except ShedSpecError as e:
        raise ApiError(422, "invalid_shed", str(e), e.field) from None
    old = get_store().put_control("shed", name, spec.stored(), time.time())
    _audit("shed_changed", actor, "put", name, old, spec.stored())
    return jsonify(spec.to_json())


@bp.delete("/shed/<name>")
def delete_shed(name: str):
    _shed_class(name)
    _delete_control("shed", "shed_changed", name, f"{name!r} requests are not being shed", "class")
    return jsonify({"deleted": [name]})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
