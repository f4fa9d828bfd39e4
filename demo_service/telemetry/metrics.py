"""Prometheus metrics of the publish API (names and labels: docs/architecture.md).

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` puts prometheus_client in multiprocess
mode: each worker writes its values to mmap files and ``/metrics`` aggregates them
(gunicorn's ``child_exit`` hook marks dead workers). In tests, a ``CollectorRegistry``
is injected and read with ``registry.get_sample_value``. Every label value comes
from a bounded set (``contract.events``), so cardinality is bounded:
route x method x code for HTTP, 4x4x4x3 cohorts x 2 releases x 2 modes x 3 outcomes for
publish outcomes (2,304 series at most).

A labelled child exists only from its first ``labels()`` call, and ``rate()`` cannot see the
increment that creates a series (there is no earlier sample to difference against). So every
series an SLO rule or alert reads is created at zero when a worker starts: the outcome-only
``obslab_slo_publish_outcomes_total{outcome}`` (3 series) and the processing-latency histogram
for each release x transcode mode (4 label sets). The cohort-labelled outcome counter stays lazy
(pre-creating it would put all 2,304 series in every scrape); it answers *where*, not *how much*.
"""

from __future__ import annotations

import glob
import os
import resource

import prometheus_client
import time
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from contract import events as contract
# *_created samples add a series per label set and carry nothing the SLIs use.
prometheus_client.disable_created_metrics()

__all__ = ["SLO_LATENCY_BUCKETS", "HTTP_BUCKETS", "PUBLISH_OUTCOMES", "ApiMetrics", "TranscoderMetrics", "NullMetric",
           "render_metrics", "ProcessSampler", "CONTENT_TYPE_LATEST"]

# 1.0 s is the latency SLO threshold (slo.yaml): a bucket boundary, so the SLI is exact.
SLO_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Terminal outcomes the service counts (abandoned is only known to the event reader).
PUBLISH_OUTCOMES = ("succeeded", "failed", "cancelled")
TRANSCODE_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _MemoLabels:
    """``labels()`` with a memo of the children already made, keyed by the call's own label values.

    prometheus_client's ``labels()`` checks the names, converts every value to ``str`` and takes the
    metric's lock on every call: a few µs per update on the hot path, where the same few children are
    asked for again and again. The memo hands back the very child ``labels()`` made (so nothing is
    measured differently)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._children: dict[tuple, Any] = {}
        super().__init__(*args, **kwargs)

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        key = labelvalues or tuple(labelkwargs.items())
        try:
            return self._children[key]
        except (KeyError, TypeError):  # not made yet, or unhashable values
            child = super().labels(*labelvalues, **labelkwargs)
        # Only str values are memoised: 1, 1.0 and True are equal keys but distinct label values.
        if all(type(v) is str for v in (labelvalues or labelkwargs.values())):
            self._children[key] = child
        return child

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*labelvalues)
        self._children = {}

    def remove_by_labels(self, labels: dict[str, str]) -> None:
        super().remove_by_labels(labels)
        self._children = {}

    def clear(self) -> None:
        super().clear()
        self._children = {}


# The updates on the request path skip prometheus_client's observability check (two calls per update) where it
# cannot fail: a child made by ``labels()`` has its label values. Everything else takes the library's own method,
# and tests/test_metrics_memo.py holds the exposition of both to be the same.


class Counter(_MemoLabels, prometheus_client.Counter):
    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if exemplar or not self._labelvalues:
            return super().inc(amount, exemplar)
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._value.inc(amount)


class Gauge(_MemoLabels, prometheus_client.Gauge):
    pass


class Histogram(_MemoLabels, prometheus_client.Histogram):
    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar or not self._labelvalues:
            return super().observe(amount, exemplar)
        self._sum.inc(amount)
        for i, bound in enumerate(self._upper_bounds):
            if amount <= bound:
                self._buckets[i].inc(1)
                break


class NullMetric:
    """Stands in for every metric when metrics are switched off (the overhead baseline)."""

    def labels(self, *args: Any, **kwargs: Any) -> "NullMetric":
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass


def _registry_for(registry: CollectorRegistry | None, multiprocess_dir: str | None) -> CollectorRegistry | None:
    # In multiprocess mode values live in mmap files; metrics need no registry of their own
    # (and must not register twice on the global one when an app is created twice).
    return None if multiprocess_dir else registry


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None, multiprocess_dir: str | None, enabled: bool = True):
        self.multiprocess_dir = multiprocess_dir
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = enabled
        reg = _registry_for(self.registry, multiprocess_dir)

        def make(factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return factory(*args, registry=reg, **kwargs) if enabled else NullMetric()

        self.http_requests = make(Counter, "obslab_http_requests_total", "HTTP requests by route, method, status code.",
                                  ["route", "method", "code"])
        self.http_duration = make(Histogram, "obslab_http_request_duration_seconds",
                                  "HTTP request duration by route and method.", ["route", "method"],
                                  buckets=HTTP_BUCKETS)
        self.events = make(Counter, "obslab_events_total", "Events written to the event log, by event.", ["event"])
        self.events_lost = make(Counter, "obslab_events_lost_total",
                                "Events not written: write_error or dropped_fault (an injected instrumentation bug).",
                                ["reason"])
        self.publish_outcomes = make(
            Counter, "obslab_publish_outcomes_total", "Terminal outcomes of publish attempts by cohort.",
            ["outcome", "region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode"])
        # What the SLO rules read: outcomes only, every series present (at 0) from the first scrape.
        self.slo_outcomes = make(Counter, "obslab_slo_publish_outcomes_total",
                                 "Terminal outcomes of publish attempts (the SLO's counter; all outcomes from 0).",
                                 ["outcome"])
        self.publish_processing = make(
            Histogram, "obslab_publish_processing_seconds",
            "Processing latency (upload_completed to publish_succeeded) of published videos.",
            ["release", "transcode_mode"], buckets=SLO_LATENCY_BUCKETS)
        self.chunks = make(Counter, "obslab_chunks_total", "Chunk uploads by result.", ["result", "network_type"])
        self.chunk_retries = make(Counter, "obslab_chunk_retries_total", "Chunks arriving again after a failure.",
                                  ["network_type"])
        self.transcode_duration = make(Histogram, "obslab_transcode_duration_seconds",
                                       "Transcode call duration as the API sees it (incl. retries).",
                                       ["media_size_bucket"], buckets=TRANSCODE_BUCKETS)
        self.transcode_failures = make(Counter, "obslab_transcode_failures_total", "Failed transcodes by class.",
                                       ["error_class"])
        self.feed_cache = make(Counter, "obslab_feed_cache_requests_total", "Feed cache lookups.", ["result"])
        self.requests_shed = make(Counter, "obslab_requests_shed_total",
                                  "Requests of a low-priority class rejected early by load shedding (/admin/shed).",
                                  ["request_class"])
        self.db_slot_timeouts = make(Counter, "obslab_db_slot_timeouts_total",
                                     "Database queries that gave up waiting for a connection slot, by operation.",
                                     ["operation"])
        self.process_cpu = make(Counter, "obslab_process_cpu_seconds_total",
                                "CPU seconds used by the service's worker processes.", ["service"])
        self.process_memory = make(Gauge, "obslab_process_resident_memory_bytes",
                                   "Resident memory of the service's live worker processes (sum).", ["service"],
                                   multiprocess_mode="livesum")
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._create_slo_series()

    def record_request(self, route: str, method: str, code: int, seconds: float) -> None:
        """The RED update of one served request: its counter and its duration histogram, whose labelled children
        are looked up once per (route, method, status code)."""
        key = (route, method, code)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.http_requests.labels(route=route, method=method, code=str(code)),
                self.http_duration.labels(route=route, method=method))
        children[0].inc()
        children[1].observe(seconds)

    def _create_slo_series(self) -> None:
        """Every series the SLO rules read, at zero (in multiprocess mode: written to this worker's file)."""
        for outcome in PUBLISH_OUTCOMES:
            self.slo_outcomes.labels(outcome=outcome)
        for release in contract.FLAGS["release"]:
            for mode in contract.FLAGS["transcode_mode"]:
                self.publish_processing.labels(release=release, transcode_mode=mode)


class TranscoderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, enabled: bool = True):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = None
        reg = self.registry

        def make(factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return factory(*args, registry=reg, **kwargs) if enabled else NullMetric()

        self.requests = make(Counter, "obslab_transcoder_requests_total", "Transcode requests by status code.",
                             ["code"])
        self.work = make(Histogram, "obslab_transcoder_work_seconds", "Simulated transcode work time.",
                         ["media_size_bucket"], buckets=TRANSCODE_BUCKETS)
        self.process_cpu = make(Counter, "obslab_process_cpu_seconds_total", "CPU seconds used by the service.",
                                ["service"])
        self.process_memory = make(Gauge, "obslab_process_resident_memory_bytes", "Resident memory of the service.",
                                   ["service"])


class ProcessSampler:
    """Feeds the process CPU counter and memory gauge at most once per interval (cheap on the hot path)."""

    def __init__(self, metrics: Any, service: str, interval_s: float = 1.0):
        self.cpu = metrics.process_cpu.labels(service=service)
        self.memory = metrics.process_memory.labels(service=service)
        self.interval_s = interval_s
        self._last_cpu = 0.0
        self._next = 0.0
        self._page = os.sysconf("SC_PAGE_SIZE")

    def maybe_sample(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        if cpu > self._last_cpu:
            self.cpu.inc(cpu - self._last_cpu)
            self._last_cpu = cpu
        try:
            with open("/proc/self/statm") as f:
                self.memory.set(int(f.read().split()[1]) * self._page)
        except OSError:
            self.memory.set(usage.ru_maxrss * 1024)


class _QueueDepthCollector:
    """``obslab_transcode_queue_depth`` read from the shared queue at scrape time (one value, any worker)."""

    def __init__(self, depth: Callable[[], int]):
        self.depth = depth

    def collect(self):
        g = GaugeMetricFamily("obslab_transcode_queue_depth", "Async transcode jobs waiting in the queue.")
        g.add_metric([], float(self.depth()))
        yield g


def render_metrics(metrics: Any, queue_depth: Callable[[], int] | None = None) -> bytes:
    """The /metrics body: aggregated over workers in multiprocess mode, else the injected registry."""
    if metrics.multiprocess_dir:
        registry = CollectorRegistry()
        _SettledFilesCollector(registry, path=metrics.multiprocess_dir)
    else:
        registry = CollectorRegistry()
        registry.register(_RegistryProxy(metrics.registry))
    if queue_depth is not None and getattr(metrics, "enabled", True):
        registry.register(_QueueDepthCollector(queue_depth))
    return generate_latest(registry)


class _RegistryProxy:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class _SettledFilesCollector(MultiProcessCollector):
    """The multiprocess aggregate over the files a worker has finished creating.

    A worker creates its file, then sizes it; on a full disk the sizing fails and the file is removed
    again (demo_service/telemetry/metric_files.py). A scrape in another worker that reads the file in
    between finds no header and fails whole: a file shorter than its 8-byte header is not a worker's
    values yet, so it is left out of this scrape."""

    def collect(self):
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= 8:
                    files.append(path)
            except OSError:  # removed since the glob: nothing to read
                continue
        return self.merge(files, accumulate=True)
