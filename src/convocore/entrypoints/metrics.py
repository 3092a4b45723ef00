"""Prometheus metrics at ``/metrics``: Litestar's per-request metrics and the real-time engine's own.

Prometheus keeps one registry per process, so the metrics are created once per process and
shared by every app in it (as Litestar's middleware does with its own); counters only ever
grow, and the socket gauge counts every app's sockets.
"""

import bisect
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.domain.events import Event
from convocore.entrypoints.frames import route_of

DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The engine's own metrics; also the socket hub's ``Observer``."""

    def __init__(self) -> None:
        self.open_sockets = Gauge("convocore_open_sockets", "WebSocket connections open now")
        self.events_published = Counter(
            "convocore_events_published", "Events this process committed and published", ["kind"]
        )
        self.deliveries = 0  # one per frame per socket: a plain count, read at scrape time
        REGISTRY.register(_Count("convocore_deliveries", "Frames queued for sockets", lambda: self.deliveries))
        self.send_queue_drops = Counter(
            "convocore_send_queue_drops", "Sockets closed (4408) because their send queue overflowed"
        )
        self.resumes = Counter("convocore_resumes", "Streams resumed from a client's last seq")
        self.resyncs = Counter("convocore_resyncs", "Resync frames: gaps too large to replay")
        # Observed around every SQL statement, several per request: plain counts read at scrape
        # time, like deliveries (a prometheus Histogram takes a lock per observation).
        self.db_statement_seconds = _Timings(
            "convocore_db_statement_seconds", "Time from sending a SQL statement to its result", DB_BUCKETS
        )
        REGISTRY.register(self.db_statement_seconds)
        self._started: dict[Connection, float] = {}

    # -- the hub's Observer --------------------------------------------------------------

    def socket_opened(self) -> None:
        self.open_sockets.inc()

    def socket_closed(self) -> None:
        self.open_sockets.dec()

    def offered(self) -> None:
        self.deliveries += 1  # a Counter takes a lock per increment; this runs per delivery

    def dropped(self) -> None:
        self.send_queue_drops.inc()

    def resumed(self) -> None:
        self.resumes.inc()

    def resynced(self) -> None:
        self.resyncs.inc()

    # -- a broadcaster listener ----------------------------------------------------------

    def published(self, event: Event) -> None:
        self.events_published.labels(kind=route_of(event).kind).inc()

    # -- the database ------------------------------------------------------------------

    def watch(self, engine: AsyncEngine) -> None:
        """Time every statement ``engine`` runs (once, however often it is asked)."""
        target = engine.sync_engine
        if not event.contains(target, "before_cursor_execute", self._before):
            event.listen(target, "before_cursor_execute", self._before)
            event.listen(target, "after_cursor_execute", self._after)
            event.listen(target, "handle_error", self._failed)

    def _before(self, connection: Connection, *_: Any) -> None:
        # A connection runs one statement at a time, so its start is all there is to keep. A
        # statement cancelled mid-way (a request whose client left) may never report back: the
        # map is cleared before such leftovers could add up.
        if len(self._started) > 1024:
            self._started.clear()
        self._started[connection] = time.perf_counter()

    def _after(self, connection: Connection, *_: Any) -> None:
        self._observe(connection)

    def _failed(self, context: ExceptionContext) -> None:
        if context.connection is not None:
            self._observe(context.connection)  # a failed statement took its time too

    def _observe(self, connection: Connection) -> None:
        started = self._started.pop(connection, None)
        if started is not None:
            self.db_statement_seconds.observe(time.perf_counter() - started)


class _Timings(Collector):
    """A histogram of durations kept as plain counts, summed into Prometheus' cumulative
    buckets only when scraped. Observed on the event loop's thread; a scrape reads ints."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self._name, self._documentation, self._bounds = name, documentation, buckets
        self._counts = [0] * (len(buckets) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total, running = list(self._counts), self._sum, 0
        buckets = []
        for bound, count in zip((*map(str, self._bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=total)


class _Count(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


@cache
def process_metrics() -> Metrics:
    return Metrics()


class MetricsController(PrometheusController):
    path = "/metrics"
    tags = ["operations"]
    include_in_schema = False  # Prometheus text, not JSON: the OpenAPI document would say application/json


def request_metrics() -> DefineMiddleware:
    """Litestar's request count, latency and in-flight metrics (convocore_request*), per route
    template rather than per URL, so ids in paths do not explode the series."""
    config = PrometheusConfig(app_name="convocore", prefix="convocore", group_path=True, scopes={ScopeType.HTTP})
    return config.middleware
