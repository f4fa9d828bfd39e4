"""`obslab rollout run` against the real service (gunicorn API + transcoder), with load from a
small bounded Python loop (the `load` branch's Locust runner is not merged here).

Stages are a few seconds each; the judge's minimum sample sizes are lowered and its
non-inferiority margins widened in the plan to fit the lab's traffic (a few dozen attempts a
stage can show a 30 pp margin, not 0.5 pp; said so in the plan)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

PLAN = """
rollout:
  stages:
    - {percent: 20, duration: 8s, window: 4s}
    - {percent: 50, duration: 8s, window: 4s}
    - {percent: 100}
  guardrails:
    - {metric: publish_success_rate, max_change: 0.2, consecutive_windows: 2}
  settle: 1s
  max_extensions: 4
judge:
  minimums: {proportion_per_arm: 10, shift_per_arm: 8}
  metrics:
    - {name: publish_success_rate, group: primary, kind: proportion, direction: decrease, allowed_change: 0.3,
       weight: 60, critical: true, numerator: "outcome = 'succeeded'",
       denominator: "outcome IN ('succeeded', 'failed', 'abandoned')"}
    - {name: processing_latency_shift, group: primary, kind: shift, direction: increase, allowed_change: 2.0,
       weight: 40, value: processing_ms, population: "outcome = 'succeeded'"}
"""


class BoundedLoad:
    """Publish attempts (create, 1 chunk, complete) from a few threads, each with a new user,
    until stopped or ``max_s`` has passed — it always stops by itself."""

    def __init__(self, base_url: str, threads: int = 6, max_s: float = 90.0):
        self.base_url, self.threads, self.max_s = base_url, threads, max_s
        self.stop_event = threading.Event()
        self.done = 0
        self.releases: list[str] = []
        self._workers: list[threading.Thread] = []

    def _run(self) -> None:
        http = requests.Session()
        deadline = time.monotonic() + self.max_s
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            body = {"media_size_bytes": 1_000_000, "chunk_count": 1, "app_version": "5.4.0", "region": "us-east",
                    "network_type": "wifi", "user_id": f"load-{secrets.token_hex(6)}"}
            try:
                up = http.post(f"{self.base_url}/v1/uploads", json=body, headers={"X-Synthetic": "1"}, timeout=10).json()
                h = {"X-Request-ID": up["request_id"], "X-Synthetic": "1"}
                http.put(f"{self.base_url}/v1/uploads/{up['upload_id']}/chunks/0", data=b"x" * 1024,
                         headers={**h, "Content-Type": "application/octet-stream", "X-Chunk-Attempt": "1"}, timeout=10)
                http.post(f"{self.base_url}/v1/uploads/{up['upload_id']}/complete", headers=h, timeout=10)
                self.releases.append(up["flags"]["release"])
                self.done += 1
            except (requests.RequestException, KeyError, ValueError):
                time.sleep(0.05)

    def __enter__(self) -> "BoundedLoad":
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self._workers:
            t.join(timeout=15)


def _run_cli(service, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    out, log = tmp_path / "rollout.json", tmp_path / "decisions.jsonl"
    proc = subprocess.run([str(Path(sys.executable).parent / "obslab"), "rollout", "run", "--events",
                           str(service.events_dir), "--log", str(log), "--plan", str(plan), "--url", service.base_url,
                           "--token", service.admin_token, "--format", "json", "-o", str(out)],
                          capture_output=True, text=True, timeout=240)
    result = json.loads(out.read_text()) if out.exists() else {}
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, result, entries


def _flag(service) -> dict:
    return service.admin("GET", "/admin/flags/release").json()


def test_rollout_run_rolls_back_a_failing_canary(fresh_service, tmp_path):
    service = fresh_service
    r = service.admin("PUT", "/admin/faults/canary-breaks", json={
        "kind": "errors", "target": "transcoder", "selector": {"release": ["canary"]}, "percentage": 100})
    assert r.status_code == 200, r.text
    with BoundedLoad(service.base_url) as load:
        proc, result, entries = _run_cli(service, tmp_path)
        rolled_back_at = datetime.now(timezone.utc)
        time.sleep(1.5)
        after = len(load.releases)
        time.sleep(2.0)
        late = load.releases[after:]
    assert proc.returncode == 0, proc.stderr
    assert result["outcome"] == "rolled_back", result["explanation"]
    assert result["rule"] in ("guardrail:publish_success_rate", "critical:publish_success_rate")
    assert result["final_percent"] == 0
    # The flag really is back at 0 % and new attempts get the stable release.
    assert _flag(service)["rollout"].get("canary", 0.0) == 0.0, _flag(service)
    assert late and set(late) == {"stable"}
    actions = [e["action"] for e in entries]
    assert actions[0] == "plan" and "stage_started" in actions and actions[-1] == "rolled_back"
    first_stage = next(e for e in entries if e["action"] == "stage_started")
    assert first_stage["percent"] == 20
    # the flag changes are audited with our actor
    audits = service.events(lambda e: e["event"] == "flag_changed")
    assert audits and all(e.get("actor") == "obslab-rollout" for e in audits)
    assert load.done > 0


def test_rollout_run_promotes_a_healthy_canary_to_100_percent(fresh_service, tmp_path):
    service = fresh_service
    with BoundedLoad(service.base_url) as load:
        proc, result, entries = _run_cli(service, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert result["outcome"] == "completed", json.dumps(result["stages"], indent=1)[:3000]
    assert [s["decision"] for s in result["stages"]] == ["promote", "promote", "completed"]
    assert _flag(service)["rollout"]["canary"] == 100.0
    judged = result["stages"][0]["compare"]
    assert judged["treatment"]["attempts"] >= 10 and judged["control"]["attempts"] >= 10
    assert not judged["srm"]["mismatch"]
    # evaluate reads the same decision log and reaches the same stage decisions from the events
    ev = subprocess.run([str(Path(sys.executable).parent / "obslab"), "rollout", "evaluate", str(service.events_dir),
                         "--log", str(tmp_path / "decisions.jsonl"), "--plan", str(tmp_path / "plan.yaml"),
                         "--format", "json"], capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["stages"][0]["decision"] == "promote"
