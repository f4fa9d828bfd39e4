"""Input the outside review sent to the real service (gunicorn): each gets a JSON 4xx naming what is
wrong, bad creates leave an ``upload_rejected`` event, and nothing over the limits is stored."""

from __future__ import annotations

import json
import secrets
import socket
from urllib.parse import urlsplit

import pytest
import requests

from conftest import DEFAULT_COHORT

pytestmark = pytest.mark.slow


def _json_error(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    error = r.json()["error"]
    assert set(error) == {"code", "message", "field"}
    return error


def _body(**fields) -> dict:
    return {"media_size_bytes": 1000, "chunk_count": 1, "user_id": f"user-{secrets.token_hex(4)}",
            **DEFAULT_COHORT, **fields}


def _rejections(service, request_id: str) -> list[dict]:
    return service.wait_for_events(lambda e: e["event"] == "upload_rejected" and e["request_id"] == request_id,
                                   timeout_s=5)


# ----------------------------------------------------------------- bodies over the limit, any framing
def test_a_chunked_transfer_over_the_limit_is_refused_not_truncated(service):
    upload = service.create_upload(chunk_count=1)
    limit = upload["max_chunk_bytes"]

    def pieces(total: int):
        for start in range(0, total, 64 * 1024):
            yield b"x" * min(64 * 1024, total - start)

    url = service.url(f"/v1/uploads/{upload['upload_id']}/chunks/0")
    r = requests.put(url, data=pieces(limit + 1), headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.request.headers
    assert _json_error(r, 413)["code"] == "payload_too_large"
    assert not service.events(lambda e: e["event"] == "chunk_uploaded" and e["upload_id"] == upload["upload_id"])
    # Exactly the limit, chunked, is a valid chunk; and the attempt publishes it whole.
    r = requests.put(url, data=pieces(limit), headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 200, r.text
    stored = service.events(lambda e: e["event"] == "chunk_uploaded" and e["upload_id"] == upload["upload_id"])
    assert [e["bytes"] for e in stored] == [limit]


def test_a_chunked_json_body_over_the_limit_is_refused(service):
    body = json.dumps(_body(user_id="u" * 300_000)).encode()
    r = requests.post(service.url("/v1/uploads"), data=iter([body[:100_000], body[100_000:]]),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert _json_error(r, 413)["code"] == "payload_too_large"


# ----------------------------------------------------------------- text that is not Unicode, deep JSON
def test_a_lone_surrogate_in_a_cancel_reason_is_refused(service):
    upload = service.create_upload(chunk_count=1)
    raw = b'{"reason": "\\ud800"}'  # valid JSON text, but not a Unicode string
    r = service.http.post(service.url(f"/v1/uploads/{upload['upload_id']}/cancel"), data=raw,
                          headers={"Content-Type": "application/json"}, timeout=30)
    error = _json_error(r, 422)
    assert error["field"] == "reason" and "surrogate" in error["message"]
    assert service.status(upload["upload_id"])["status"] == "uploading"
    assert not service.events(lambda e: e["event"] == "upload_cancelled" and e["upload_id"] == upload["upload_id"])


def test_a_lone_surrogate_in_a_user_id_is_rejected_and_recorded(service):
    request_id = f"req-{secrets.token_hex(8)}"
    raw = json.dumps(_body(user_id="PLACEHOLDER")).replace("PLACEHOLDER", "\\udfff").encode()
    r = service.http.post(service.url("/v1/uploads"), data=raw, timeout=30,
                          headers={"Content-Type": "application/json", "X-Request-ID": request_id})
    error = _json_error(r, 422)
    assert error["field"] == "user_id" and "surrogate" in error["message"]
    rejected = _rejections(service, request_id)
    assert len(rejected) == 1 and rejected[0]["field"] == "user_id" and rejected[0]["user_id"] is None


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_too_deep_is_a_400_and_recorded(service, depth):
    request_id = f"req-{secrets.token_hex(8)}"
    raw = b'{"user_id": ' + b"[" * depth + b"]" * depth + b"}"
    r = service.http.post(service.url("/v1/uploads"), data=raw, timeout=30,
                          headers={"Content-Type": "application/json", "X-Request-ID": request_id})
    error = _json_error(r, 400)
    assert error["code"] == "invalid_json" and "nested" in error["message"]
    assert len(_rejections(service, request_id)) == 1
    assert requests.get(service.url("/healthz"), timeout=30).status_code == 200


# ----------------------------------------------------------------- one X-Request-ID, one upload
def test_a_second_upload_with_the_same_request_id_is_refused(service):
    first = service.create_upload()
    request_id = first["request_id"]
    r = service.http.post(service.url("/v1/uploads"), json=_body(), headers={"X-Request-ID": request_id}, timeout=30)
    error = _json_error(r, 409)
    assert error["code"] == "duplicate_request_id" and error["field"] == "X-Request-ID"
    assert first["upload_id"] in error["message"]
    started = service.events(lambda e: e["event"] == "upload_started" and e["request_id"] == request_id)
    assert [e["upload_id"] for e in started] == [first["upload_id"]]
    assert len(_rejections(service, request_id)) == 1
    # The attempt that owns the ID goes on as before.
    assert service.put_chunk(first["upload_id"], 0, headers={"X-Request-ID": request_id}).status_code == 200


# ----------------------------------------------------------------- gunicorn's own refusals
def _raw_http(service, request: bytes) -> tuple[int, dict, bytes]:
    url = urlsplit(service.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/feed HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /v1/feed HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    (b"GET /v1/feed HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
])
def test_requests_gunicorn_refuses_get_the_json_error_shape(service, request_bytes, status):
    got, headers, body = _raw_http(service, request_bytes)
    assert got == status, body[:200]
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    assert requests.get(service.url("/healthz"), timeout=30).status_code == 200
