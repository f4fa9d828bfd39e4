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


UPDATES = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 9.99, 10.0, 11.0, float("inf"), float("nan"), -0.5]


def _exposition(counter_class, histogram_class) -> str:
    registry = CollectorRegistry()
    c = counter_class("obslab_w_total", "w", ["route"], registry=registry)
    bare = counter_class("obslab_x_total", "x", registry=registry)  # no labels: the library's own path
    h = histogram_class("obslab_w_seconds", "w", ["route"], buckets=(0.005, 0.1, 1.0, 10.0), registry=registry)
    for i, amount in enumerate(UPDATES):
        route = "/a" if i % 3 else "/b"
        c.labels(route=route).inc(abs(amount) if amount == amount else 1)
        bare.inc(2)
        h.labels(route=route).observe(amount)
    with pytest.raises(ValueError):
        c.labels(route="/a").inc(-1)
    with pytest.raises(ValueError):  # a labelled parent is not observable, with or without the hot path
        c.inc()
    with pytest.raises(ValueError):
        h.observe(0.1)
    return generate_latest(registry).decode()


def test_the_hot_path_updates_expose_what_prometheus_client_s_own_methods_expose():
    import prometheus_client

    ours = _exposition(Counter, Histogram)
    assert 'obslab_w_seconds_bucket{le="0.005",route="/a"}' in ours  # the updates landed
    assert ours == _exposition(prometheus_client.Counter, prometheus_client.Histogram)


def test_record_request_counts_and_times_each_request_under_its_labels():
    from demo_service.telemetry.metrics import ApiMetrics

    registry = CollectorRegistry()
    metrics = ApiMetrics(registry, None)
    metrics.record_request("/v1/feed", "GET", 200, 0.02)
    metrics.record_request("/v1/feed", "GET", 200, 0.3)
    metrics.record_request("/v1/feed", "GET", 503, 0.001)
    labels = {"route": "/v1/feed", "method": "GET"}
    assert registry.get_sample_value("obslab_http_requests_total", {**labels, "code": "200"}) == 2
    assert registry.get_sample_value("obslab_http_requests_total", {**labels, "code": "503"}) == 1
    assert registry.get_sample_value("obslab_http_request_duration_seconds_count", labels) == 3
    assert registry.get_sample_value("obslab_http_request_duration_seconds_bucket", {**labels, "le": "0.025"}) == 2
    assert registry.get_sample_value("obslab_http_request_duration_seconds_sum", labels) == pytest.approx(0.321)


def test_the_multiprocess_fast_update_writes_the_bytes_the_library_writes(tmp_path, monkeypatch):
    """A worker's value updates go straight into its slot of the metric file (demo_service/telemetry/
    metric_files.py); what a scrape reads from the files is what prometheus_client's own value writes, also after
    a fork (where the library's path takes over again)."""
    from prometheus_client import values
    from prometheus_client.multiprocess import MultiProcessCollector

    from demo_service.telemetry import metric_files

    def scrape(directory) -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        return generate_latest(registry)

    scrapes = []
    for name, value_class in (("library", values.MultiProcessValue(lambda: 1)),
                              ("ours", metric_files._value_class(values.MultiProcessValue(lambda: 1)))):
        directory = tmp_path / name
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        a = value_class("counter", "c_total", "c", ("route",), ("/a",), "help")
        b = value_class("counter", "c_total", "c", ("route",), ("/b",), "help")
        for _ in range(5):
            a.inc(1)
            b.inc(0.25)
        if name == "ours":
            assert a._slot is not None  # the fast path was the one taken
            monkeypatch.setattr(metric_files, "_pid", [metric_files._pid[0] + 1])  # as in a forked child
        b.inc(0.25)
        assert (a.get(), b.get()) == (5.0, 1.5)
        scrapes.append(scrape(directory))
    assert b'c{route="/a"} 5.0' in scrapes[0] and b'c{route="/b"} 1.5' in scrapes[0]
    assert scrapes[1] == scrapes[0]
