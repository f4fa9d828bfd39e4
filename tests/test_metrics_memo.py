"""Metric children memoised on the hot path: the very child prometheus_client's labels() makes, nothing measured
differently."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from demo_service.telemetry.metrics import Counter, Histogram


def test_a_memoised_child_is_the_one_labels_made_and_counts_the_same():
    registry = CollectorRegistry()
    c = Counter("obslab_t_total", "t", ["result", "network_type"], registry=registry)
    first = c.labels(result="uploaded", network_type="wifi")
    assert c.labels(result="uploaded", network_type="wifi") is first
    assert c.labels("uploaded", "wifi") is first  # positional and keyword calls reach the same child
    assert c.labels(network_type="wifi", result="uploaded") is first
    for _ in range(3):
        c.labels(result="uploaded", network_type="wifi").inc()
    assert registry.get_sample_value("obslab_t_total", {"result": "uploaded", "network_type": "wifi"}) == 3


def test_values_that_are_equal_but_print_differently_are_not_confused():
    registry = CollectorRegistry()
    c = Counter("obslab_u_total", "u", ["code"], registry=registry)
    c.labels(code=1).inc()
    c.labels(code=True).inc()  # 1 == True, but the label values are "1" and "True"
    c.labels(code="1").inc()
    assert registry.get_sample_value("obslab_u_total", {"code": "1"}) == 2
    assert registry.get_sample_value("obslab_u_total", {"code": "True"}) == 1


def test_wrong_label_names_still_fail_and_clear_forgets_the_children():
    registry = CollectorRegistry()
    h = Histogram("obslab_v_seconds", "v", ["route"], buckets=(0.1, 1.0), registry=registry)
    h.labels(route="/a").observe(0.05)
    with pytest.raises(ValueError):
        h.labels(path="/a")
    h.clear()
    assert "route=\"/a\"" not in generate_latest(registry).decode()
    h.labels(route="/a").observe(0.5)
    assert registry.get_sample_value("obslab_v_seconds_count", {"route": "/a"}) == 1
