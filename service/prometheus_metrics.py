"""Prometheus telemetry: the ``NullMetrics`` hooks, recorded with prometheus_client.

Several gunicorn workers: prometheus_client's multiprocess mode. Every worker writes its samples
to memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (whichever worker
answers) sums the files of all workers, dead ones included, so counters never go backwards when
a worker is recycled. ``gunicorn.conf.py`` sets the directory up (a fresh one per server start)
and marks exited workers dead. The variable must be in the environment before prometheus_client
is first imported: it picks its value storage at import time.

Without the variable (one process: tests, ``flask run``) each instance keeps its own registry.
Nothing here touches Redis, so the ``/artwork`` path keeps its two Redis round trips.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from service.config import ConfigError

log = logging.getLogger(__name__)

NAMESPACE = "artwork"
# Seconds; the decision path answers in a few ms, the buckets resolve 1 ms .. 2.5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_storage_active() -> bool:
    """True when prometheus_client was imported with PROMETHEUS_MULTIPROC_DIR set."""
    return values.ValueClass is not values.MutexValue


# prometheus_client's multiprocess values call os.getpid() at every increment to notice a fork
# (a system call: ~10% of a 40-title /artwork's Python time, one increment per decision). The
# same value class, given the pid read once per process and again in a forked child (before any
# of its code runs), notices the same forks. Swapped before this module creates any metric.
_pid = [os.getpid()]
if multiprocess_storage_active():
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid[0])


class PrometheusMetrics:
    """The app's telemetry hooks (same methods as ``NullMetrics``) as Prometheus metrics."""

    def __init__(self, multiproc_dir: str = ""):
        if multiproc_dir and not multiprocess_storage_active():
            raise ConfigError(
                "PROMETHEUS_MULTIPROC_DIR must be set before the service is imported "
                "(use `gunicorn -c gunicorn.conf.py`, which sets it)"
            )
        self.multiproc_dir = multiproc_dir
        # In multiprocess mode the samples live in files; the registry is only used to render.
        self.registry = CollectorRegistry()
        own = None if multiproc_dir else self.registry
        self.requests = Histogram(
            f"{NAMESPACE}_http_request_duration_seconds",
            "HTTP request latency by endpoint (route pattern), method and status.",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self._decision_children: dict[tuple[str, str], object] = {}
        self._request_children: dict[tuple[str, str, int], object] = {}
        self.decisions = Counter(
            f"{NAMESPACE}_decisions",
            "Decisions served by a policy (fallbacks excluded), by title and policy.",
            ["title", "policy"],
            registry=own,
        )
        self.rewards = Counter(
            f"{NAMESPACE}_rewards",
            "Rewards received, by title, the policy that made the decision, and status (recorded|duplicate).",
            ["title", "policy", "status"],
            registry=own,
        )
        self.fallbacks = Counter(
            f"{NAMESPACE}_fallbacks",
            "Default artworks served because the store did not answer, by title and reason.",
            ["title", "reason"],
            registry=own,
        )
        self.store_errors = Counter(
            f"{NAMESPACE}_store_errors",
            "Redis calls that failed or timed out, by operation and error type.",
            ["operation", "error"],
            registry=own,
        )
        self.model_version = Gauge(
            f"{NAMESPACE}_model_version",
            "Version of the model in force per title (set by the model loader).",
            ["title"],
            registry=own,
            multiprocess_mode="mostrecent",
        )
        # The engine reports a failed decision round trip per title (observe_fallback), then the
        # request's decisions; the reason is kept per thread to count the Redis error once.
        self._fallback_reason = threading.local()

    # -- the hooks the app calls
    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        child = self._request_children.get(key)
        if child is None:  # labels() takes a lock and builds a key: once per series, not per request
            child = self._request_children[key] = self.requests.labels(endpoint, method, str(status))
        child.observe(seconds)

    def observe_decisions(self, decisions: Iterable) -> None:
        fell_back = False
        children = self._decision_children
        for d in decisions:
            if d.fallback:
                fell_back = True
                continue
            # labels() costs a lock and a lookup per call; a 40-title page would pay it 40 times.
            child = children.get((d.title, d.policy))
            if child is None:
                child = children[(d.title, d.policy)] = self.decisions.labels(d.title, d.policy)
            child.inc()
        if fell_back:
            self.store_errors.labels("decide", getattr(self._fallback_reason, "value", "unknown")).inc()

    def observe_reward(self, title: str, outcome) -> None:
        self.rewards.labels(title, outcome.policy or "unknown", outcome.status).inc()

    def observe_fallback(self, title: str, reason: str) -> None:
        self.fallbacks.labels(title, reason).inc()
        self._fallback_reason.value = reason

    def observe_store_error(self, operation: str, exc: BaseException) -> None:
        self.store_errors.labels(operation, type(exc).__name__).inc()

    def observe_model_version(self, title: str, version: float) -> None:
        self.model_version.labels(title).set(version)

    # -- reading
    def _render_registry(self) -> CollectorRegistry:
        if not self.multiproc_dir:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiproc_dir)
        return registry

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._render_registry()), CONTENT_TYPE_LATEST

    def totals(self) -> dict:
        """Fallbacks per title, store errors per operation and responses per status class, summed
        over all workers: the dashboard's health counters."""
        out: dict = {"fallbacks": {}, "store_errors": {}, "responses": {}}
        for family in self._render_registry().collect():
            for sample in family.samples:
                if sample.name == f"{NAMESPACE}_fallbacks_total":
                    key, slot = sample.labels["title"], out["fallbacks"]
                elif sample.name == f"{NAMESPACE}_store_errors_total":
                    key, slot = sample.labels["operation"], out["store_errors"]
                elif sample.name == f"{NAMESPACE}_http_request_duration_seconds_count":
                    key, slot = sample.labels["status"][0] + "xx", out["responses"]
                else:
                    continue
                slot[key] = slot.get(key, 0) + int(sample.value)
        return out
