"""Prometheus metrics for the limiter: an :class:`~ratelimit_mw.observe.Observer`.

Nothing is registered at import time. An application builds one
:class:`RateLimitMetrics` with the registry it exposes, and attaches it::

    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    metrics.attach(middleware)          # a middleware, an Engine or a Limiter
    app = serve_metrics_asgi(middleware, metrics)   # answers GET /metrics

Labels are bounded by the policy document: route template, policy name and
outcome, backend error class, memory store. Never a client key or a raw path, so
a flood of distinct clients or URLs cannot grow the number of series.

Exported (``ratelimit`` is the default ``namespace``):

==========================================  =========  ===============================
metric                                      type       labels
==========================================  =========  ===============================
``ratelimit_decisions_total``               counter    route, policy, outcome
``ratelimit_decision_duration_seconds``     histogram  (none)
``ratelimit_backend_duration_seconds``      histogram  (none)
``ratelimit_backend_errors_total``          counter    kind
``ratelimit_breaker_state``                 gauge      (none): 0 closed, 1 half-open, 2 open
``ratelimit_fallback_active``               gauge      (none): 1 while memory fallback answers
``ratelimit_memory_tracked_keys``           gauge      store (primary, fallback)
``ratelimit_memory_evictions_total``        counter    store (primary, fallback)
``ratelimit_outbound_decisions_total``      counter    direction ("outbound"), rule, host, outcome
``ratelimit_outbound_wait_seconds``         histogram  rule
``ratelimit_outbound_pauses_total``         counter    rule, signal
``ratelimit_overload_limit``                gauge      pool
``ratelimit_overload_inflight``             gauge      pool, class
``ratelimit_overload_shed_total``           counter    pool, class, reason (limit, shadow)
``ratelimit_overload_limit_changes_total``  counter    pool, direction (up, down)
``ratelimit_inflight_leases``               gauge      (none): requests holding Redis leases
``ratelimit_inflight_lease_expired_total``  counter    (none)
``ratelimit_inflight_lease_lost_total``     counter    (none)
==========================================  =========  ===============================

The overload metrics (:mod:`ratelimit_mw.overload`) are read from the gates at
scrape time, so requests pay nothing for them; like the limits they describe, they
are per process. ``reason="shadow"`` counts requests that would have been shed
(``mode: shadow``, or during the warm-up).

The in-flight metrics (``N concurrent`` limits, :mod:`ratelimit_mw.inflight`) are read
from the limiters at scrape time: leases this process holds on a remote backend,
leases it failed to renew before they ran out (``expired``: it stalled, or Redis was
unreachable), and releases or renewals that found their lease gone (``lost``).

The outbound metrics count calls *to* other APIs (:mod:`ratelimit_mw.outbound`):
``rule`` is the outbound rule's name and ``host`` its host pattern as configured,
never a request's URL; ``outcome`` is ``allowed`` (no wait), ``waited``,
``limited`` (raised) or ``degraded`` (decided by ``on_backend_error``).

Multiprocess servers (gunicorn, uvicorn ``--workers``): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the server starts. The
counters and histograms then live in per-process files, and the exposition
helpers here serve the sum over processes with prometheus-client's
``MultiProcessCollector``. The two gauges take the worst live worker
(``livemax``); configure :func:`gunicorn_child_exit` so dead workers drop out.
The memory-store metrics are read from the process answering the scrape (they
are per-process state by nature; with several workers, use Redis).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import make_asgi_app as _make_asgi_app
from prometheus_client import make_wsgi_app as _make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.requestview import route_path
from ratelimit_mw.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "BREAKER_STATES",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "RateLimitMetrics",
    "WAIT_BUCKETS",
    "exposition_registry",
    "gunicorn_child_exit",
    "metrics_asgi_app",
    "metrics_wsgi_app",
    "multiprocess_enabled",
    "serve_metrics_asgi",
    "serve_metrics_wsgi",
]

#: Environment variable that switches prometheus-client to multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Gauge values of ``<namespace>_breaker_state``; higher is worse, so ``max`` is meaningful.
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

#: Histogram buckets in seconds: a memory check takes a few microseconds and a Redis
#: round trip a fraction of a millisecond, so most buckets sit below 5 ms; the
#: upper ones catch timeouts (tens of ms by default).
LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

#: Buckets for outbound waits, in seconds: from no wait to a minute in the queue.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def multiprocess_enabled() -> bool:
    """True when ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus-client's own switch)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class _MemoryCollector(Collector):
    """Reads memory-backend sizes at scrape time, so requests pay nothing for them."""

    def __init__(self, names: tuple[str, str], limiters: Callable[[], list[Any]]) -> None:
        self._names = names
        self._limiters = limiters

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        keys_name, evictions_name = self._names
        return (
            GaugeMetricFamily(keys_name, "Entries held by in-memory limiter stores.", labels=["store"]),
            CounterMetricFamily(
                evictions_name,
                "Entries evicted from in-memory stores to respect max_keys.",
                labels=["store"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        keys, evictions = self._families()
        totals: dict[str, list[float]] = {}
        for limiter in self._limiters():
            # the fallback is made on the first check the memory failure mode answers
            stores = (("primary", limiter.backend), ("fallback", limiter.failure.fallback))
            for store, backend in stores:
                if isinstance(backend, MemoryBackend):
                    entry = totals.setdefault(store, [0.0, 0.0])
                    entry[0] += backend.tracked_keys
                    entry[1] += backend.evictions
        for store, (tracked, evicted) in sorted(totals.items()):
            keys.add_metric([store], tracked)
            evictions.add_metric([store], evicted)
        yield keys
        yield evictions


class _OverloadCollector(Collector):
    """Reads the overload gates of the attached engines at scrape time."""

    def __init__(self, namespace: str, engines: Callable[[], list[Any]]) -> None:
        self._namespace = namespace
        self._engines = engines

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        ns = self._namespace
        return (
            GaugeMetricFamily(f"{ns}_overload_limit", "Adaptive concurrency limit per overload pool.",
                              labels=["pool"]),
            GaugeMetricFamily(f"{ns}_overload_inflight", "Requests in flight per overload pool and class.",
                              labels=["pool", "class"]),
            CounterMetricFamily(f"{ns}_overload_shed", "Requests shed (reason limit) or that would have been "
                                "(reason shadow), per pool and class.", labels=["pool", "class", "reason"]),
            CounterMetricFamily(f"{ns}_overload_limit_changes", "Changes of an overload pool's limit, by direction.",
                                labels=["pool", "direction"]),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        limit, inflight, shed, changes = self._families()
        for engine in self._engines():
            overload = getattr(engine, "overload", None)
            if overload is None:
                continue
            classes = overload.spec.priorities
            for pool, gate in sorted(overload.gates.items()):
                limit.add_metric([pool], gate.limit)
                for i, name in enumerate(classes):
                    inflight.add_metric([pool, name], gate.by_class[i])
                    shed.add_metric([pool, name, "limit"], gate.shed[i])
                    shed.add_metric([pool, name, "shadow"], gate.observed[i])
                changes.add_metric([pool, "up"], gate.changes[0])
                changes.add_metric([pool, "down"], gate.changes[1])
        yield from (limit, inflight, shed, changes)


class _LeaseCollector(Collector):
    """Reads the attached limiters' in-flight lease counters at scrape time."""

    def __init__(self, namespace: str, limiters: Callable[[], list[Any]]) -> None:
        self._namespace = namespace
        self._limiters = limiters

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        ns = self._namespace
        return (
            GaugeMetricFamily(f"{ns}_inflight_leases", "Requests of this process holding in-flight leases "
                              "on a remote backend."),
            CounterMetricFamily(f"{ns}_inflight_lease_expired", "In-flight leases this process failed to renew "
                                "before they ran out."),
            CounterMetricFamily(f"{ns}_inflight_lease_lost", "In-flight lease releases or renewals that found "
                                "the lease gone."),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        held, expired, lost = self._families()
        totals = [0.0, 0.0, 0.0]
        for limiter in self._limiters():
            stats = getattr(limiter, "lease_stats", None)
            if stats is None:
                continue
            totals[0] += limiter.leases_held
            totals[1] += stats.expired
            totals[2] += stats.lost
        held.add_metric([], totals[0])
        expired.add_metric([], totals[1])
        lost.add_metric([], totals[2])
        yield from (held, expired, lost)


class RateLimitMetrics:
    """Prometheus implementation of the :class:`~ratelimit_mw.observe.Observer` protocol.

    Args:
        registry: where the metrics are registered; ``None`` means prometheus-client's
            default ``REGISTRY``. Build one instance per registry: registering the same
            names twice raises ``ValueError`` (prometheus-client's duplicate check).
        namespace: prefix of every metric name.
        buckets: latency histogram buckets, in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "ratelimit",
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        reg = self.registry
        self._decisions = Counter(
            "decisions",
            "Rate-limit decisions by route template, policy and outcome.",
            ["route", "policy", "outcome"],
            namespace=namespace,
            registry=reg,
        )
        self._decision_seconds = Histogram(
            "decision_duration_seconds",
            "Time the limiter took to decide one request.",
            namespace=namespace,
            registry=reg,
            buckets=buckets,
        )
        self._backend_seconds = Histogram(
            "backend_duration_seconds",
            "Latency of one backend round trip (successful calls).",
            namespace=namespace,
            registry=reg,
            buckets=buckets,
        )
        self._backend_errors = Counter(
            "backend_errors",
            "Backend calls that failed, by exception class.",
            ["kind"],
            namespace=namespace,
            registry=reg,
        )
        self._breaker = Gauge(
            "breaker_state",
            "Backend circuit breaker: 0 closed, 1 half-open, 2 open.",
            namespace=namespace,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._fallback = Gauge(
            "fallback_active",
            "1 while the in-memory fallback answers instead of the backend.",
            namespace=namespace,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._outbound = Counter(
            "outbound_decisions",
            "Outbound calls by rule, host pattern and outcome (allowed, waited, limited, degraded).",
            ["direction", "rule", "host", "outcome"],
            namespace=namespace,
            registry=reg,
        )
        self._outbound_wait = Histogram(
            "outbound_wait_seconds",
            "Time outbound calls waited for quota (admitted or not).",
            ["rule"],
            namespace=namespace,
            registry=reg,
            buckets=WAIT_BUCKETS,
        )
        self._outbound_pauses = Counter(
            "outbound_pauses",
            "Pauses asked for by remote APIs (Retry-After, RateLimit, X-RateLimit-*), by rule and signal.",
            ["rule", "signal"],
            namespace=namespace,
            registry=reg,
        )
        self._outbound_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._limiters: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.collector = _MemoryCollector(
            (f"{namespace}_memory_tracked_keys", f"{namespace}_memory_evictions"),
            lambda: list(self._limiters),
        )
        reg.register(self.collector)
        self._engines: weakref.WeakSet[Any] = weakref.WeakSet()
        self.overload_collector = _OverloadCollector(namespace, lambda: list(self._engines))
        reg.register(self.overload_collector)
        self.lease_collector = _LeaseCollector(namespace, lambda: list(self._limiters))
        reg.register(self.lease_collector)
        # Label children cached by label tuple: ``labels()`` takes a lock and
        # validates its arguments on every call; a dict hit is several times cheaper.
        self._decision_children: dict[tuple[str, str, str], Any] = {}
        self._error_children: dict[str, Any] = {}
        self._observe_decision = self._decision_seconds.observe
        self._observe_backend = self._backend_seconds.observe

    # -- wiring ----------------------------------------------------------------------

    def attach(self, target: Any) -> Any:
        """Report the events of ``target`` here; returns ``target`` for chaining.

        Args:
            target: a middleware (anything with ``.engine``), an
                :class:`~ratelimit_mw.engine.Engine` (anything with ``.limiter``), a
                :class:`~ratelimit_mw.limiter.Limiter`, an
                :class:`~ratelimit_mw.outbound.OutboundLimiter` or an httpx transport of
                :mod:`ratelimit_mw.httpx` (anything with ``.outbound``).

        Raises:
            TypeError: ``target`` is none of these.
        """
        outbound = getattr(target, "outbound", target)
        if hasattr(outbound, "observe_response"):
            outbound.observer = self
            self.attach(outbound.limiter)
            return target
        engine = getattr(target, "engine", None)
        if engine is None and hasattr(target, "limiter") and hasattr(target, "set_policies"):
            engine = target
        limiter = engine.limiter if engine is not None else target
        if not hasattr(limiter, "breaker") or not hasattr(limiter, "backend"):
            raise TypeError(
                f"cannot attach metrics to {type(target).__name__}: expected a middleware, an Engine or a Limiter"
            )
        if engine is not None:
            engine.observer = self
        limiter.observer = self
        with self._lock:
            self._limiters.add(limiter)
            if engine is not None:
                self._engines.add(engine)
        self.breaker(limiter.breaker.state)
        if limiter.on_backend_error == "memory":
            self.fallback(limiter.breaker.state != "closed")
        return target

    @property
    def names(self) -> frozenset[str]:
        """Every sample name this object can export (``_total``, ``_bucket``... included)."""
        families = [
            self._decisions,
            self._decision_seconds,
            self._backend_seconds,
            self._backend_errors,
            self._breaker,
            self._fallback,
            self._outbound,
            self._outbound_wait,
            self._outbound_pauses,
        ]
        out: set[str] = set()
        for family in families:
            for metric in family.describe():
                out.update(_sample_names(metric))
        for collector in (self.collector, self.overload_collector, self.lease_collector):
            for metric in collector.describe():
                out.update(_sample_names(metric))
        return frozenset(out)

    # -- Observer --------------------------------------------------------------------

    def decision(self, route: str, policy: str, outcome: str, seconds: float) -> None:
        """Count one decision; time it unless it skipped the limiter (``exempt``)."""
        key = (route, policy, outcome)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decisions.labels(route, policy, outcome)
            self._decision_children[key] = child
        child.inc()
        if outcome != "exempt":
            self._observe_decision(seconds)

    def backend_call(self, seconds: float) -> None:
        """Record the latency of one successful backend round trip."""
        self._observe_backend(seconds)

    def backend_error(self, kind: str) -> None:
        """Count one failed backend call by exception class name."""
        child = self._error_children.get(kind)
        if child is None:
            child = self._backend_errors.labels(kind)
            self._error_children[kind] = child
        child.inc()

    def breaker(self, state: str) -> None:
        """Set the breaker gauge (unknown states count as open: fail loud)."""
        self._breaker.set(BREAKER_STATES.get(state, 2.0))

    def fallback(self, active: bool) -> None:
        """Set the fallback gauge."""
        self._fallback.set(1.0 if active else 0.0)

    # -- OutboundObserver (ratelimit_mw.outbound) -------------------------------------

    def outbound_decision(self, rule: str, host: str, outcome: str, seconds: float) -> None:
        """Count one outbound call and record how long it waited for quota."""
        key = (rule, host, outcome)
        children = self._outbound_children.get(key)
        if children is None:
            children = (self._outbound.labels("outbound", rule, host, outcome), self._outbound_wait.labels(rule))
            self._outbound_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def outbound_pause(self, rule: str, signal: str) -> None:
        """Count one pause asked for by a remote API."""
        self._outbound_pauses.labels(rule, signal).inc()


def _sample_names(metric: Metric) -> set[str]:
    base = metric.name
    if metric.type == "counter":
        return {base + "_total", base + "_created"}
    if metric.type == "histogram":
        return {base + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    return {base}


# -- exposition ------------------------------------------------------------------------


def exposition_registry(source: RateLimitMetrics | CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry a ``/metrics`` endpoint should serve.

    Single process: ``source``'s registry (prometheus-client's default for ``None``).
    Multiprocess (``PROMETHEUS_MULTIPROC_DIR`` set): a fresh registry with a
    ``MultiProcessCollector`` that sums every process's files, plus the scrape-time
    memory collector of ``source`` when it is a :class:`RateLimitMetrics`. The
    registries are not merged, which would count this process's samples twice.

    Args:
        source: a :class:`RateLimitMetrics`, a registry, or ``None``.
    """
    if not multiprocess_enabled():
        if isinstance(source, RateLimitMetrics):
            return source.registry
        return REGISTRY if source is None else source
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if isinstance(source, RateLimitMetrics):
        registry.register(source.collector)
    return registry


def metrics_wsgi_app(source: RateLimitMetrics | CollectorRegistry | None = None) -> WSGIApp:
    """A WSGI app answering every request with the metrics (mount it at ``/metrics``).

    Args:
        source: see :func:`exposition_registry`.
    """
    app: WSGIApp = _make_wsgi_app(exposition_registry(source))
    return app


def metrics_asgi_app(source: RateLimitMetrics | CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app answering every HTTP request with the metrics (mount it at ``/metrics``).

    Lifespan messages are acknowledged, so the app also runs on its own under uvicorn.

    Args:
        source: see :func:`exposition_registry`.
    """
    inner = _make_asgi_app(exposition_registry(source))

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        await inner(scope, receive, send)

    return metrics_app


def serve_metrics_asgi(
    app: ASGIApp, source: RateLimitMetrics | CollectorRegistry | None = None, *, path: str = "/metrics"
) -> ASGIApp:
    """Wrap ``app`` so that ``GET path`` serves the metrics; everything else goes to ``app``.

    Wrap the outermost app (the rate-limit middleware included), so scrapes are
    never limited nor counted as decisions. Needs no change to the middleware.

    Args:
        app: the ASGI app (typically the :class:`~ratelimit_mw.asgi.RateLimitMiddleware`).
        source: see :func:`exposition_registry`.
        path: the metrics path, matched exactly after ``root_path`` is stripped.
    """
    metrics = metrics_asgi_app(source)

    async def with_metrics(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) == path:
            await metrics(scope, receive, send)
        else:
            await app(scope, receive, send)

    return with_metrics


def serve_metrics_wsgi(
    app: WSGIApp, source: RateLimitMetrics | CollectorRegistry | None = None, *, path: str = "/metrics"
) -> WSGIApp:
    """WSGI twin of :func:`serve_metrics_asgi`."""
    metrics = metrics_wsgi_app(source)

    def with_metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") or "/") == path:
            return metrics(environ, start_response)
        return app(environ, start_response)

    return with_metrics


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop a dead worker's ``live*`` gauges in multiprocess mode.

    In ``gunicorn.conf.py``: ``from ratelimit_mw.metrics import gunicorn_child_exit as child_exit``.
    """
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
