"""Load shedding and the database's connection slots, in-process: the slot pool, the capacity fault's and the
shed spec's validation, the shed-load action's grammar, and the /admin/shed control through Flask's test client
(auth, audit, the 503 + Retry-After a shed request gets, the metric that counts it)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from demo_service.app import create_app
from demo_service.capacity import SlotPool, primary_query
from demo_service.faults import FaultSpecError, parse_fault
from demo_service.shedding import ShedSpecError, parse_shed, sheds
from toolkit.drills.mitigation import ActionError, parse_action

TOKEN = "secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- the slot pool -------------------------------------------------------------------------------------

def _concurrently(n: int, fn) -> list:
    out: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        out[i] = fn()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_slot_pool_admits_its_slots_and_fails_the_rest_after_the_wait():
    pool = SlotPool(2)
    t0 = time.monotonic()
    refused_after = []

    def one():
        ok = pool.hold(1.0, 0.05)
        if not ok:
            refused_after.append(time.monotonic() - t0)
        return ok
    got = _concurrently(5, one)
    assert sorted(got) == [False, False, False, True, True]
    assert max(refused_after) < 0.9  # the refused ones gave up after their wait, not after the holders


def test_slot_pool_under_light_load_never_fails():
    pool = SlotPool(1)
    assert all(pool.hold(0.01, 0.05) for _ in range(20))  # one at a time: nothing waits


def test_a_waiting_query_gets_a_slot_that_frees_within_its_wait():
    pool = SlotPool(1)
    got = _concurrently(2, lambda: pool.hold(0.05, 1.0))
    assert got == [True, True]


def test_primary_query_applies_only_capacity_faults():
    capacity = parse_fault("slots-test-a", {"kind": "capacity", "target": "db",
                                            "params": {"slots": 1, "query_ms": 1000, "wait_ms": 0}})
    latency = parse_fault("slots-test-b", {"kind": "latency", "target": "db"})
    assert primary_query([latency])  # nothing held, nothing refused
    got = _concurrently(3, lambda: primary_query([capacity]))
    assert sorted(got) == [False, False, True]


def test_capacity_fault_vocabulary():
    f = parse_fault("x", {"kind": "capacity", "target": "db", "params": {"slots": 3}})
    assert (f.param("slots"), f.param("query_ms"), f.param("wait_ms")) == (3, 20, 250)
    with pytest.raises(FaultSpecError) as e:
        parse_fault("x", {"kind": "capacity", "target": "transcoder"})
    assert e.value.field == "target"
    with pytest.raises(FaultSpecError) as e:
        parse_fault("x", {"kind": "capacity", "target": "db", "params": {"slots": 0}})
    assert e.value.field == "params.slots"


# -- the shed spec and the action ---------------------------------------------------------------------

def test_shed_spec_defaults_and_errors_name_the_field():
    assert parse_shed("status", {}).stored() == {"percent": 100.0, "retry_after_s": 2}
    assert parse_shed("feed", {"percent": 25, "retry_after_s": 5}).stored() == {"percent": 25.0, "retry_after_s": 5}
    for name, body, field in [("nope", {}, "class"), ("status", {"percent": 0}, "percent"),
                              ("status", {"percent": True}, "percent"), ("status", {"retry_after_s": 1.5},
                                                                          "retry_after_s"),
                              ("status", {"colour": 1}, "colour"), ("status", [], None)]:
        with pytest.raises(ShedSpecError) as e:
            parse_shed(name, body)
        assert e.value.field == field, (name, body)


def test_shedding_a_percent_rejects_about_that_share():
    import random

    rng = random.Random(7)
    spec = parse_shed("status", {"percent": 90})
    share = sum(sheds(spec, rng) for _ in range(10_000)) / 10_000
    assert 0.88 < share < 0.92
    assert not sheds(None, rng) and sheds(parse_shed("status", {}), rng)


@pytest.mark.parametrize("text,shed", [("shed-load status", ("status", 100)), ("shed-load feed:25", ("feed", 25)),
                                       ("shed-load status:90", ("status", 90))])
def test_shed_load_action_parses(text, shed):
    a = parse_action(text)
    assert (a.verb, a.text, a.shed) == ("shed-load", text, shed)


@pytest.mark.parametrize("text,fragment", [("shed-load uploads", "unknown request class 'uploads'"),
                                           ("shed-load status:0", "integer in [1, 100]"),
                                           ("shed-load status:101", "integer in [1, 100]"),
                                           ("shed-load status:x", "integer in [1, 100]"),
                                           ("shed-load", "expected VERB ARG")])
def test_shed_load_action_errors_name_the_bad_part(text, fragment):
    with pytest.raises(ActionError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_action(text)


# -- the control through the app ----------------------------------------------------------------------

@pytest.fixture
def app_parts(tmp_path):
    registry = CollectorRegistry()
    app = create_app({"DATA_DIR": str(tmp_path), "METRICS_REGISTRY": registry, "ADMIN_TOKEN": TOKEN,
                      "ASYNC_WORKERS": 0, "TRANSCODER_URL": "http://127.0.0.1:9"})
    return app.test_client(), registry, tmp_path / "events"


def _events(events_dir) -> list[dict]:
    return [json.loads(line) for p in sorted(events_dir.rglob("*.jsonl")) for line in p.read_text().splitlines()]


def _upload(client) -> str:
    r = client.post("/v1/uploads", json={"media_size_bytes": 5, "chunk_count": 1, "app_version": "5.2.0",
                                         "region": "ap-south", "network_type": "3g", "user_id": "carol"})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["upload_id"]


def test_shed_control_needs_the_token(app_parts):
    client, _, _ = app_parts
    assert client.put("/admin/shed/status", json={}).status_code == 401
    assert client.put("/admin/shed/status", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/admin/shed").status_code == 401
    assert client.delete("/admin/shed/status").status_code == 401
    upload_id = _upload(client)
    assert client.get(f"/v1/uploads/{upload_id}").status_code == 200  # nothing was shed


def test_shedding_status_polls_rejects_them_early_and_is_audited_and_counted(app_parts):
    client, registry, events_dir = app_parts
    upload_id = _upload(client)
    r = client.put("/admin/shed/status", json={"retry_after_s": 3}, headers={**AUTH, "X-Actor": "oncall"})
    assert r.status_code == 200 and r.get_json() == {"class": "status", "route": "GET /v1/uploads/{upload_id}",
                                                     "percent": 100.0, "retry_after_s": 3}
    shed = client.get(f"/v1/uploads/{upload_id}")
    assert shed.status_code == 503 and shed.headers["Retry-After"] == "3"
    assert shed.get_json()["error"]["code"] == "load_shed"
    # Shed before the upload is even looked up: an unknown upload is shed too, not 404.
    assert client.get("/v1/uploads/up_" + "0" * 24).status_code == 503
    assert client.get("/v1/feed").status_code == 200  # another class is untouched
    assert registry.get_sample_value("obslab_requests_shed_total", {"request_class": "status"}) == 2
    assert client.get("/admin/shed", headers=AUTH).get_json()["shed"][0]["class"] == "status"
    assert client.delete("/admin/shed/status", headers=AUTH).status_code == 200
    assert client.get(f"/v1/uploads/{upload_id}").status_code == 200
    assert client.delete("/admin/shed/status", headers=AUTH).status_code == 404
    audit = [e for e in _events(events_dir) if e["event"] == "shed_changed"]
    assert [(e["actor"], e["change"]["action"], e["change"]["name"]) for e in audit] == [
        ("oncall", "put", "status"), ("admin-api", "delete", "status")]
    assert audit[0]["change"]["new"] == {"percent": 100.0, "retry_after_s": 3}


def test_shed_control_refuses_bad_specs_naming_the_field(app_parts):
    client, _, _ = app_parts
    r = client.put("/admin/shed/status", json={"percent": 150}, headers=AUTH)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "percent"
    r = client.put("/admin/shed/uploads", json={}, headers=AUTH)
    assert r.status_code == 404 and "classes" in r.get_json()["error"]["message"]


def test_capacity_fault_fails_status_reads_only_when_the_slots_are_busy(app_parts):
    client, registry, _ = app_parts
    upload_id = _upload(client)
    r = client.put("/admin/faults/pool", json={"kind": "capacity", "target": "db",
                                               "params": {"slots": 1, "query_ms": 1000, "wait_ms": 20}}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    assert client.get(f"/v1/uploads/{upload_id}").status_code == 200  # alone: it waits for nothing
    app = client.application
    codes = _concurrently(3, lambda: app.test_client().get(f"/v1/uploads/{upload_id}").status_code)
    assert sorted(codes) == [200, 503, 503]
    assert registry.get_sample_value("obslab_db_slot_timeouts_total", {"operation": "status"}) == 2
