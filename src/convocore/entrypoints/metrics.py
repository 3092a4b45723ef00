"""Prometheus metrics at ``/metrics``: per-request metrics (named as Litestar's middleware named
them) and the real-time engine's own.

Prometheus keeps one registry per process, so the metrics are created once per process and
shared by every app in it (as Litestar's middleware does with its own); counters only ever
grow, and the socket gauge counts every app's sockets.
"""

import bisect
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusController
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client.core import (
    REGISTRY,
    Counter,
    CounterMetricFamily,
    Gauge,
    GaugeMetricFamily,
    Histogram,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.registry import Collector

from convocore.domain import events as ev
from convocore.domain.events import Event
from convocore.entrypoints.errors import status_of

# The label of each kind of event published (the frame's type where it has its own route).
_KINDS: dict[type[Event], str] = {
    ev.MessageCreated: "message.created",
    ev.MessageUpdated: "message.updated",
    ev.MessageDeleted: "message.deleted",
    ev.MemberJoined: "member.joined",
    ev.MemberLeft: "member.left",
    ev.PresenceChanged: "presence",
    ev.SessionRevoked: "session.revoked",
    ev.UserTyping: "typing",
}

DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The engine's own metrics; also the socket hub's ``Observer``."""

    def __init__(self) -> None:
        self.open_sockets = Gauge("convocore_open_sockets", "WebSocket connections open now")
        # One per event published, several per post: plain counts read at scrape time.
        self.events_published = _KindCounts("convocore_events_published", "Events this process committed and published")
        REGISTRY.register(self.events_published)
        self.deliveries = 0  # one per frame per socket, added to by the hub: read at scrape time
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
        self.requests = RequestCounts(prefix="convocore", app_name="convocore")
        REGISTRY.register(self.requests)

    # -- the hub's Observer --------------------------------------------------------------

    def socket_opened(self) -> None:
        self.open_sockets.inc()

    def socket_closed(self) -> None:
        self.open_sockets.dec()

    def dropped(self) -> None:
        self.send_queue_drops.inc()

    def resumed(self) -> None:
        self.resumes.inc()

    def resynced(self) -> None:
        self.resyncs.inc()

    # -- a broadcaster listener ----------------------------------------------------------

    def published(self, event: Event) -> None:
        self.events_published.add(_KINDS.get(type(event), "event"))


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
        buckets = _cumulative(self._bounds, list(self._counts))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=self._sum)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one above every bound) as Prometheus' cumulative ``le`` buckets."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*map(repr, bounds), "+Inf"), counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets


_REQUEST_LABELS = ("method", "path", "status_code", "app_name")


class RequestCounts(Collector):
    """The request metrics Litestar's ``PrometheusMiddleware`` kept (its names, labels, buckets and
    ``_created`` samples: ``convocore_requests_total``, ``convocore_requests_error_total``,
    ``convocore_request_duration_seconds``, ``convocore_requests_in_progress``), as plain counts
    per series, turned into Prometheus' families only when scraped: its middleware built a
    ``Request``, a labels dict and a copied ``send`` per request and took a metric's lock five times."""

    def __init__(self, *, prefix: str, app_name: str, buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS) -> None:
        self._prefix, self._app_name = prefix, app_name
        self._bounds = tuple(bound for bound in buckets if bound != float("inf"))
        self._in_progress: dict[tuple[str, str], int] = {}  # (method, path) -> requests in flight
        # (method, path, status) -> [count, sum, per-bucket counts, created]
        self._done: dict[tuple[str, str, int], list[Any]] = {}

    def started(self, method: str, path: str) -> None:
        self._in_progress[method, path] = self._in_progress.get((method, path), 0) + 1

    def finished(self, method: str, path: str, status: int, seconds: float) -> None:
        self._in_progress[method, path] -= 1
        series = self._done.get((method, path, status))
        if series is None:
            series = self._done[method, path, status] = [0, 0.0, [0] * (len(self._bounds) + 1), time.time()]
        series[0] += 1
        series[1] += seconds
        series[2][bisect.bisect_left(self._bounds, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        prefix, labels = self._prefix, list(_REQUEST_LABELS)
        in_progress = GaugeMetricFamily(
            f"{prefix}_requests_in_progress", "Total requests currently in progress", labels=labels
        )
        for (method, path), count in list(self._in_progress.items()):
            in_progress.add_metric([method, path, "200", self._app_name], count)  # as Litestar labelled it
        requests = CounterMetricFamily(f"{prefix}_requests", "Total requests", labels=labels)
        errors = CounterMetricFamily(f"{prefix}_requests_error", "Total errors in requests", labels=labels)
        durations = HistogramMetricFamily(
            f"{prefix}_request_duration_seconds", "Request duration, in seconds", labels=labels
        )
        for (method, path, status), (count, total, buckets, created) in list(self._done.items()):
            values = [method, path, str(status), self._app_name]
            requests.add_metric(values, count, created=created)
            if status >= 500:
                errors.add_metric(values, count, created=created)
            durations.add_metric(values, _cumulative(self._bounds, list(buckets)), sum_value=total)
            durations.samples.append(
                Sample(f"{prefix}_request_duration_seconds_created", dict(zip(labels, values, strict=True)), created)
            )
        yield in_progress
        yield requests
        if errors.samples:  # Litestar made this one at the first server error
            yield errors
        yield durations


class RequestMetrics:
    """ASGI middleware (HTTP only, behind routing: ``path_template`` is the matched route's)
    that counts each request into ``RequestCounts``: its status is the response's, its
    duration runs until the last body message, as Litestar's middleware measured them; a
    request refused by an error raised in a middleware inside this one counts under the status
    the error handlers give it."""

    def __init__(self, app: ASGIApp, *, counts: RequestCounts) -> None:
        self._app, self._counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope  # HTTP only (HttpOnly mounts it), past routing
        method, path = http["method"], http["path_template"]
        counts = self._counts
        counts.started(method, path)
        began = time.perf_counter()
        status: int | None = None
        ended = 0.0

        async def timed(message: Message) -> None:
            nonlocal status, ended
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]  # type: ignore[typeddict-item]
            elif kind == "http.response.body":
                ended = time.perf_counter()
            await send(message)

        try:
            await self._app(scope, receive, timed)
        except Exception as error:
            # Raised by a middleware inside this one (HTTP budgets: 429): answered outside it.
            # Litestar's own metrics middleware counted these as 200.
            if status is None:
                status, ended = status_of(error), time.perf_counter()
            raise
        finally:
            counts.finished(method, path, 200 if status is None else status, ended - began if ended else 0.0)


class _Count(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


class _KindCounts(Collector):
    """A counter labelled by event kind, as prometheus' ``Counter`` with ``["kind"]`` exposes it
    (``_total`` and ``_created`` per kind), kept as plain counts: a ``Counter`` took a lock for
    ``labels`` and another for ``inc``, for every event."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name, self._documentation = name, documentation
        self._counts: dict[str, list[float]] = {}  # kind -> [count, created]

    def add(self, kind: str) -> None:
        found = self._counts.get(kind)
        if found is None:
            found = self._counts[kind] = [0, time.time()]
        found[0] += 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=["kind"])
        for kind, (count, created) in list(self._counts.items()):
            family.add_metric([kind], count, created=created)
        yield family


@cache
def process_metrics() -> Metrics:
    return Metrics()


class MetricsController(PrometheusController):
    path = "/metrics"
    tags = ["operations"]
    include_in_schema = False  # Prometheus text, not JSON: the OpenAPI document would say application/json


def request_metrics(metrics: Metrics) -> DefineMiddleware:
    """Request count, latency and in-flight metrics (convocore_request*), per route template
    rather than per URL, so ids in paths do not explode the series."""
    return DefineMiddleware(RequestMetrics, counts=metrics.requests)
