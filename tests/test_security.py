"""The control plane's defences and the service's hygiene, against the real service.

- /admin needs the bearer token (compared with hmac.compare_digest), refuses remote
  clients by default, and every accepted change leaves exactly one audit event;
- a bind beyond loopback is announced loudly;
- no raw user identifier and no admin token in any file the run wrote (events, spans,
  logs, state) nor in /metrics;
- request size limits, path and ID validation.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
import sys
from pathlib import Path

import pytest
import requests

from demo_service.app import create_app
from demo_service.gunicorn_conf import bind_warning, when_ready

ADMIN_CALLS = [
    ("GET", "/admin/faults", None),
    ("DELETE", "/admin/faults", None),
    ("GET", "/admin/faults/slow", None),
    ("PUT", "/admin/faults/slow", {"kind": "latency", "target": "api", "params": {"latency_ms": 10}}),
    ("DELETE", "/admin/faults/slow", None),
    ("GET", "/admin/flags", None),
    ("GET", "/admin/flags/release", None),
    ("PUT", "/admin/flags/release", {"default": "canary", "rollout": {}}),
    ("DELETE", "/admin/flags/release", None),
]


def _audit_events(service) -> list[dict]:
    return service.events(lambda e: e["event"] in ("fault_changed", "flag_changed"))


@pytest.mark.slow
def test_admin_refuses_every_call_without_the_right_token(service):
    token = service.admin_token
    bad_auth = {
        "none": {},
        "wrong token, same length": {"Authorization": f"Bearer {'A' * len(token)}"},
        "token with a suffix": {"Authorization": f"Bearer {token}x"},
        "prefix of the token": {"Authorization": f"Bearer {token[:-1]}"},
        "basic scheme": {"Authorization": f"Basic {token}"},
        "token without scheme": {"Authorization": token},
        "empty bearer": {"Authorization": "Bearer "},
    }
    audits_before = len(_audit_events(service))
    for method, path, body in ADMIN_CALLS:
        for what, headers in bad_auth.items():
            r = requests.request(method, service.url(path), json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, what, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
            assert token not in r.text and token[:8] not in r.text  # nothing echoed back
            assert not any(h.lower().startswith("access-control-allow") for h in r.headers)
    # Nothing changed, nothing audited.
    assert service.admin("GET", "/admin/faults").json() == {"faults": []}
    assert len(_audit_events(service)) == audits_before


@pytest.mark.slow
def test_every_accepted_change_is_audited_once_and_refusals_never(service):
    before = len(_audit_events(service))
    actor = "security-test"
    changes = [
        ("PUT", "/admin/faults/sec-a", {"kind": "latency", "target": "api", "params": {"latency_ms": 1}},
         ("fault_changed", "put", "sec-a")),
        ("PUT", "/admin/faults/sec-b", {"kind": "errors", "target": "transcoder", "selector": {"percentage": 1}},
         ("fault_changed", "put", "sec-b")),
        ("DELETE", "/admin/faults/sec-a", None, ("fault_changed", "delete", "sec-a")),
        ("DELETE", "/admin/faults", None, ("fault_changed", "delete", "sec-b")),
        ("PUT", "/admin/flags/release", {"default": "stable", "rollout": {"canary": 5}},
         ("flag_changed", "put", "release")),
        ("DELETE", "/admin/flags/release", None, ("flag_changed", "delete", "release")),
    ]
    for method, path, body, (event, action, name) in changes:
        r = service.admin(method, path, json=body, headers={"X-Actor": actor})
        assert r.status_code == 200, (path, r.text)
        new = _audit_events(service)[before:]  # written before the response: no waiting
        assert len(new) == 1, (path, new)
        assert new[0]["event"] == event and new[0]["change"]["action"] == action
        assert new[0]["change"]["name"] == name and new[0]["actor"] == actor
        before += 1
    # Refused changes (invalid spec, unknown flag, absent fault) leave no audit event.
    for method, path, body in [("PUT", "/admin/faults/bad", {"kind": "nonsense"}),
                               ("PUT", "/admin/flags/nope", {"default": "x"}),
                               ("DELETE", "/admin/faults/absent", None)]:
        assert service.admin(method, path, json=body).status_code in (404, 422)
    assert len(_audit_events(service)) == before


def test_token_is_compared_with_compare_digest(tmp_path):
    """Run real admin requests through the app and watch which comparison the guard calls."""
    app = create_app({"DATA_DIR": str(tmp_path), "ADMIN_TOKEN": "s3cret-token-value", "INSTRUMENTATION": "off"})
    client = app.test_client()
    seen: list[object] = []

    def profile(frame, event, arg):
        if event == "c_call" and arg in (hmac.compare_digest,):
            seen.append(arg)

    sys.setprofile(profile)
    try:
        refused = client.get("/admin/faults", headers={"Authorization": "Bearer s3cret-token-valuX"})
        accepted = client.get("/admin/faults", headers={"Authorization": "Bearer s3cret-token-value"})
    finally:
        sys.setprofile(None)
    assert (refused.status_code, accepted.status_code) == (401, 200)
    assert len(seen) >= 2, "the admin guard did not call hmac.compare_digest"


def test_remote_clients_are_refused_unless_allowed(tmp_path):
    token = "t0ken-for-remote-test"
    for allow, expected in ((False, 403), (True, 200)):
        app = create_app({"DATA_DIR": str(tmp_path / str(allow)), "ADMIN_TOKEN": token, "INSTRUMENTATION": "off",
                          "ADMIN_ALLOW_REMOTE": allow})
        client = app.test_client()
        r = client.get("/admin/faults", headers={"Authorization": f"Bearer {token}"},
                       environ_base={"REMOTE_ADDR": "192.0.2.10"})
        assert r.status_code == expected, r.get_data(as_text=True)
        local = client.get("/admin/faults", headers={"Authorization": f"Bearer {token}"},
                           environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert local.status_code == 200


def test_binding_beyond_loopback_is_announced_loudly(caplog):
    assert bind_warning(["127.0.0.1:8000", "[::1]:8000", "localhost:8000"], False) is None
    assert "0.0.0.0:8000" in bind_warning(["0.0.0.0:8000"], False)
    assert "OBSLAB_ADMIN_ALLOW_REMOTE=1" in bind_warning(["192.0.2.1:80"], True)

    # gunicorn's own config object and a real logger: the hook gunicorn calls when ready.
    from gunicorn.config import Config

    class Arbiter:  # the two attributes gunicorn's arbiter gives the hook
        cfg = Config()
        log = logging.getLogger("gunicorn.error.test")

    Arbiter.cfg.set("bind", ["0.0.0.0:8000"])
    with caplog.at_level(logging.WARNING, logger="gunicorn.error.test"):
        when_ready(Arbiter)
    assert any("beyond loopback" in r.message for r in caplog.records)


@pytest.mark.slow
def test_the_service_listens_on_loopback_by_default(service):
    import psutil

    master = next(p for p in service.processes.processes if p.name == "publish-api").proc.pid
    procs = [psutil.Process(master)] + psutil.Process(master).children(recursive=True)
    listening = {c.laddr.ip for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}, listening


@pytest.mark.slow
def test_no_raw_user_id_and_no_admin_token_in_any_output(make_service):
    svc = make_service(trace_sample_ratio=1.0)
    raw_ids = ["raw-user-alice-4f1c9e", "bob.secret@example.org", "carol+7781"]
    for raw in raw_ids:
        svc.publish(user_id=raw)
    upload = svc.create_upload(user_id=raw_ids[0])
    svc.http.post(svc.url(f"/v1/uploads/{upload['upload_id']}/cancel"), json={"reason": "changed mind"}, timeout=30)
    # A rejected request (bad region) still carries the user: it must be hashed too.
    body = {"media_size_bytes": 10, "chunk_count": 1, "app_version": "5.4.0", "region": "mars",
            "network_type": "wifi", "user_id": raw_ids[1]}
    assert svc.http.post(svc.url("/v1/uploads"), json=body, timeout=30).status_code == 422
    # Control-plane use, right and wrong token, with the actor header.
    svc.admin("PUT", "/admin/faults/scan", json={"kind": "latency", "target": "api", "params": {"latency_ms": 1}},
              headers={"X-Actor": "scanner"})
    svc.admin("DELETE", "/admin/faults/scan")
    svc.admin("GET", "/admin/faults", token=svc.admin_token[::-1])
    assert svc.events(lambda e: e["event"] == "upload_rejected")
    metrics_text = svc.http.get(svc.url("/metrics"), timeout=30).text + \
        svc.http.get(svc.transcoder_url + "/metrics", timeout=30).text
    svc.processes.stop()  # flushes batched spans and closes the logs

    secrets_ = [r.encode() for r in raw_ids] + [svc.admin_token.encode()]
    scanned, found = 0, []
    for path in Path(svc.data_dir).rglob("*"):
        if not path.is_file() or path.name == "admin-token":  # the token's own file, mode 0600
            continue
        data = path.read_bytes()
        scanned += 1
        found += [(str(path), s.decode()) for s in secrets_ if s in data]
    found += [("/metrics", s.decode()) for s in secrets_ if s.decode() in metrics_text]
    assert not found, found
    names = {p.name for p in Path(svc.data_dir).rglob("*") if p.is_file()}
    assert {"events.jsonl", "spans.jsonl", "publish-api.log", "transcoder.log"} <= names, names
    assert scanned >= 5


@pytest.mark.slow
def test_secret_files_are_private(service):
    for name in ("admin-token", "user-hash.key"):
        mode = stat.S_IMODE(os.stat(Path(service.data_dir) / name).st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))


@pytest.mark.slow
def test_request_size_limits(service):
    upload = service.create_upload(chunk_count=1)
    big_chunk = b"x" * (256 * 1024 + 1)
    r = service.put_chunk(upload["upload_id"], 0, data=big_chunk)
    assert r.status_code == 413 and r.json()["error"]["code"]
    big_json = {"media_size_bytes": 1, "chunk_count": 1, "app_version": "5.4.0", "region": "us-east",
                "network_type": "wifi", "user_id": "u" * 300_000}
    assert requests.post(service.url("/v1/uploads"), json=big_json, timeout=30).status_code == 413
    long_user = dict(big_json, user_id="u" * 10_000)
    assert requests.post(service.url("/v1/uploads"), json=long_user, timeout=30).status_code == 422
    # Headers beyond gunicorn's limits are refused before the app sees them.
    r = requests.get(service.url("/v1/feed"), headers={"X-Request-ID": "a" * 20_000}, timeout=30)
    assert r.status_code in (400, 431)
    assert requests.get(service.url("/healthz"), timeout=30).status_code == 200


@pytest.mark.slow
def test_path_and_id_validation(service):
    upload = service.create_upload(chunk_count=1)
    uid = upload["upload_id"]
    checks = [
        ("GET", "/v1/uploads/..%2F..%2Fetc%2Fpasswd", {}, (400, 404)),
        ("GET", "/v1/uploads/up_" + "0" * 24, {}, (404,)),
        ("GET", "/v1/uploads/up_" + "Z" * 24, {}, (400, 404)),
        ("PUT", f"/v1/uploads/{uid}/chunks/-1", {}, (400, 404)),
        ("PUT", f"/v1/uploads/{uid}/chunks/99999999999999999999", {}, (404, 422)),
        ("PUT", f"/v1/uploads/{uid}/chunks/5", {}, (404, 409, 422)),
        ("POST", f"/v1/uploads/{uid}/complete", {"X-Request-ID": "bad id with spaces"}, (400,)),
        ("POST", f"/v1/uploads/{uid}/complete", {"X-Request-ID": "../../etc"}, (400,)),
        ("GET", "/v1/feed?limit=-1", {}, (422,)),
        ("GET", "/v1/feed?limit=1e9", {}, (422,)),
    ]
    for method, path, headers, expected in checks:
        r = requests.request(method, service.url(path), headers=headers, data=b"x", timeout=30)
        assert r.status_code in expected, (method, path, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json"), (path, r.headers["Content-Type"])
    for name in ("..%2Fx", "a" * 300, "bad name", "x%00y"):
        r = service.admin("PUT", f"/admin/faults/{name}", json={"kind": "latency", "target": "api"})
        assert r.status_code in (404, 422), (name, r.status_code, r.text)
    # An actor that is not a plain name (markup, control characters) never reaches the audit log.
    audits = len(_audit_events(service))
    r = service.admin("DELETE", "/admin/faults", headers={"X-Actor": "eve<script>"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "X-Actor"
    assert len(_audit_events(service)) == audits
    assert requests.get(service.url("/healthz"), timeout=30).status_code == 200
