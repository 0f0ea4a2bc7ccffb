"""What the server is doing, for ``GET /api/metrics`` in the Prometheus text format (prometheus-client).

    adain_jax_serve_requests_total{endpoint, status}    answers, by endpoint and HTTP status
    adain_jax_serve_request_seconds{endpoint}           latency, from the request's start to its last byte
    adain_jax_serve_queue_depth                         requests waiting for the stylizer
    adain_jax_serve_batch_size                          images per run of the stylizer (before padding)
    adain_jax_serve_style_cache_{hits,misses}_total     style statistics found in / added to the cache
    adain_jax_serve_style_cache_bytes                   the cache's size
    adain_jax_serve_compilations_total                  XLA programs compiled in this process
    adain_jax_serve_compilation_seconds_total           time spent compiling them
    adain_jax_serve_compilation_cache_loads_total       programs loaded from the persistent cache instead

Each app has its own registry (several apps may live in one process, as in the tests). Compilations
are counted process-wide from JAX's monitoring events, by one listener installed on first use.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

PREFIX = "adain_jax_serve"
ENDPOINTS = {"/api/stylize": "stylize", "/api/health": "health", "/api/metrics": "metrics", "/api/info": "info",
             "/": "page"}
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

_compile_lock = threading.Lock()
_compiles = {"count": 0, "seconds": 0.0, "cache_loads": 0}
_listening = False


def _listen_for_compilations() -> None:
    global _listening
    with _compile_lock:
        if _listening:
            return
        import jax

        def on_duration(event: str, duration_secs: float, **kwargs: str | int) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                with _compile_lock:
                    _compiles["count"] += 1
                    _compiles["seconds"] += duration_secs

        def on_event(event: str, **kwargs: str | int) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                with _compile_lock:
                    _compiles["cache_loads"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)
        _listening = True


def compilations() -> dict:
    """Process-wide: programs compiled, seconds spent compiling, programs loaded from the persistent cache."""
    with _compile_lock:
        return dict(_compiles)


class _CompileCollector:
    def collect(self):
        counts = compilations()
        yield CounterMetricFamily(f"{PREFIX}_compilations", "XLA programs compiled in this process",
                                  value=counts["count"])
        yield CounterMetricFamily(f"{PREFIX}_compilation_seconds", "seconds spent compiling XLA programs",
                                  value=counts["seconds"])
        yield CounterMetricFamily(f"{PREFIX}_compilation_cache_loads",
                                  "programs loaded from the persistent compilation cache", value=counts["cache_loads"])


class Metrics:
    """The app's metrics: the worker and the middleware update them, `render` answers the scrape."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        _listen_for_compilations()
        r = self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "HTTP answers by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "seconds from a request's start to its answer's end",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "requests waiting for the stylizer", registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "images per run of the stylizer (before padding)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.cache_hits = Counter(f"{PREFIX}_style_cache_hits", "style statistics found in the cache", registry=r)
        self.cache_misses = Counter(f"{PREFIX}_style_cache_misses", "style statistics computed and cached",
                                    registry=r)
        self.cache_bytes = Gauge(f"{PREFIX}_style_cache_bytes", "bytes held by the style cache", registry=r)
        r.register(_CompileCollector())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: counts every answer by endpoint and status and times it (refusals included)."""

    def __init__(self, app, *, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = ENDPOINTS.get(path) or ("static" if path.startswith("/static/") else
                                           "examples" if path.startswith("/api/examples") else "other")
        status = 500  # unless an answer starts: the app failed before answering
        start = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
