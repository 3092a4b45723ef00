"""/ready, /metrics, request ids and JSON logs: in-process where that suffices, and on a real
server for sockets and its log file."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import websockets
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry, generate_latest

from convocore.entrypoints.app import create_app
from convocore.entrypoints.metrics import RequestCounts, _Timings
from convocore.entrypoints.settings import Settings
from tests.support.remote import Remote, assert_closed_with, next_frame
from tests.support.scrape import metric, metric_names
from tests.support.server import ServerProcess, free_port
from tests.support.storage import Storage, storage_for

FAST_HASHING: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_cost": 1024}
OURS = {
    "convocore_open_sockets",
    "convocore_events_published",
    "convocore_deliveries",
    "convocore_send_queue_drops",
    "convocore_resumes",
    "convocore_resyncs",
    "convocore_db_statement_seconds",
    "convocore_requests",  # Litestar's, with our prefix
    "convocore_request_duration_seconds",
}
RESYNC_LIMIT = 5


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


# -- /ready ----------------------------------------------------------------------------------


async def test_ready_when_the_database_answers() -> None:
    async with _client(Settings(memory=True, **FAST_HASHING)) as client:
        r = await client.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_not_ready_names_redis_when_it_does_not_answer() -> None:
    closed_port = free_port()  # bound a moment ago, now nothing listens there
    settings = Settings(memory=True, redis_url=f"redis://127.0.0.1:{closed_port}/0", **FAST_HASHING)
    async with _client(settings) as client:
        r = await client.get("/ready")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["type"] == "urn:convocore:problem:not-ready"
        assert body["status"] == 503
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"] != "ok"
        assert body["detail"].startswith("redis: ")


async def test_ready_with_redis_when_it_answers(redis_url: str, redis_prefix: str) -> None:
    async with _client(Settings(memory=True, redis_url=redis_url, redis_prefix=redis_prefix, **FAST_HASHING)) as client:
        r = await client.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_not_ready_names_the_database_when_it_is_gone(postgres_database: str) -> None:
    async with _client(Settings(database_url=postgres_database, migrate=True, **FAST_HASHING)) as client:
        assert (await client.get("/ready")).status_code == 200
        parts = urlsplit(postgres_database)
        admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
        try:
            await admin.execute(f'DROP DATABASE "{parts.path.lstrip("/")}" WITH (FORCE)')
        finally:
            await admin.close()
        r = await client.get("/ready")
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["database"].startswith("the database does not answer")
        assert "redis" not in r.json()["checks"]


# -- request ids ------------------------------------------------------------------------------


async def test_a_sane_request_id_is_echoed_and_any_other_is_replaced() -> None:
    async with _client(Settings(memory=True, **FAST_HASHING)) as client:
        r = await client.get("/health", headers={"X-Request-ID": "lb-7f3a.42"})
        assert r.headers["x-request-id"] == "lb-7f3a.42"
        for insane in ("has space", "x" * 200, 'quote"d', "new\\nline"):
            r = await client.get("/health", headers={"X-Request-ID": insane})
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), insane
        first, second = (await client.get("/health")).headers, (await client.get("/health")).headers
        assert first["x-request-id"] != second["x-request-id"]
        r = await client.get("/api/no/such/route/")  # errors carry one too
        assert r.status_code == 404 and r.headers.get("x-request-id")


# -- a real server: metrics and logs ----------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Storage]]:
    tmp = tmp_path_factory.mktemp("obs")
    with storage_for(default="sqlite", tmp=tmp) as storage:
        args = [*storage.server_args, "--log-format", "json", "--log-level", "info"]
        process = ServerProcess(*args, env={"CONVOCORE_RESYNC_LIMIT": str(RESYNC_LIMIT)}, cwd=tmp).start()
        yield process, storage
        process.stop()


@pytest.fixture
async def remote(server: tuple[ServerProcess, Storage]) -> AsyncIterator[Remote]:
    client = Remote(server[0].base_url, server[0].ws_url)
    yield client
    await client.close()


async def ready_socket(ws: Any) -> None:
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_frame(ws, skip=("presence", "member.joined")) == {"type": "pong"}


async def eventually(read: Any, expected: float, tries: int = 50) -> float:
    """Some values settle just after the client sees the effect (a socket's close, say)."""
    value = await read()
    for _ in range(tries):
        if value == expected:
            break
        await asyncio.sleep(0.1)
        value = await read()
    return float(value)


async def test_metrics_exposes_each_of_ours(remote: Remote) -> None:
    await remote.http.get("/ready")
    assert await metric_names(remote.http) >= OURS


async def test_open_sockets_count_up_and_down(remote: Remote) -> None:
    a = await remote.account()
    before = await metric(remote.http, "convocore_open_sockets")
    async with websockets.connect(f"{remote.ws_url}/ws/?token={a.token}") as ws:
        await ready_socket(ws)
        assert await metric(remote.http, "convocore_open_sockets") == before + 1
    assert await eventually(lambda: metric(remote.http, "convocore_open_sockets"), before) == before


async def test_a_message_counts_as_published_and_delivered(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    published = await metric(remote.http, "convocore_events_published_total", kind="message.created")
    delivered = await metric(remote.http, "convocore_deliveries_total")
    async with remote.socket(cid, b.token) as ws:
        await ready_socket(ws)
        await remote.send(a, cid, "counted")
        assert (await next_frame(ws))["type"] == "message.created"
    assert await metric(remote.http, "convocore_events_published_total", kind="message.created") == published + 1
    assert await metric(remote.http, "convocore_deliveries_total") >= delivered + 2  # the pong and the message


async def test_resumes_and_resyncs_are_counted(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    await remote.send(a, cid, "one")
    resumes = await metric(remote.http, "convocore_resumes_total")
    async with remote.socket(cid, b.token + "&since=0") as ws:
        assert (await next_frame(ws))["message"]["seq"] == 1
    async with websockets.connect(f"{remote.ws_url}/ws/?token={b.token}") as ws:
        await ready_socket(ws)
        await ws.send(json.dumps({"type": "resume", "since": {cid: 1}}))
        await ready_socket(ws)
    assert await metric(remote.http, "convocore_resumes_total") == resumes + 2

    resyncs = await metric(remote.http, "convocore_resyncs_total")
    for i in range(RESYNC_LIMIT + 2):
        await remote.send(a, cid, f"m{i}")
    async with remote.socket(cid, b.token + "&since=1") as ws:
        assert (await next_frame(ws))["type"] == "resync"
    assert await metric(remote.http, "convocore_resyncs_total") == resyncs + 1


async def test_database_statements_are_timed(remote: Remote, server: tuple[ServerProcess, Storage]) -> None:
    if server[1].kind == "memory":
        pytest.skip("CONVOCORE_TEST_DATABASE=memory: there is no database to time")
    before = await metric(remote.http, "convocore_db_statement_seconds_count")
    await remote.account()
    assert await metric(remote.http, "convocore_db_statement_seconds_count") >= before + 2
    assert await metric(remote.http, "convocore_db_statement_seconds_sum") > 0


async def test_request_metrics_follow_the_route_template(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    before = await metric(remote.http, "convocore_requests_total", path="/api/messages/{conversation_id}")
    await remote.http.get(f"/api/messages/{cid}/", headers=a.auth)
    after = await metric(remote.http, "convocore_requests_total", path="/api/messages/{conversation_id}")
    assert after == before + 1


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    assert server.log_path is not None
    text = server.log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


async def logged(server: ServerProcess, request_id: str, needle: str) -> dict[str, Any]:
    for _ in range(50):
        for line in log_lines(server):
            if line["request_id"] == request_id and needle in line["message"]:
                return line
        await asyncio.sleep(0.1)
    raise AssertionError(f"no log line with request id {request_id} and {needle!r}")


async def test_json_log_lines_carry_the_request_id(remote: Remote, server: tuple[ServerProcess, Storage]) -> None:
    process = server[0]
    a = await remote.account()
    r = await remote.http.get("/api/users/me/", headers={**a.auth, "X-Request-ID": "obs-http-1"})
    assert r.headers["x-request-id"] == "obs-http-1"
    line = await logged(process, "obs-http-1", "GET /api/users/me")
    assert set(line) >= {"timestamp", "level", "logger", "message", "request_id"}
    assert line["level"] == "info" and line["logger"] == "uvicorn.access"

    generated = (await remote.http.get("/health")).headers["x-request-id"]
    await logged(process, generated, "/health")

    url = f"{remote.ws_url}/ws/?token={a.token}"
    async with websockets.connect(url, additional_headers={"X-Request-ID": "obs-ws-1"}) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "obs-ws-1"
        await ready_socket(ws)
    await logged(process, "obs-ws-1", "socket opened")
    await logged(process, "obs-ws-1", "socket closed")

    refused = f"{remote.ws_url}/ws/?token=not-a-token"
    async with websockets.connect(refused, additional_headers={"X-Request-ID": "obs-ws-2"}) as ws:
        await assert_closed_with(ws, 4401)
    await logged(process, "obs-ws-2", "socket refused")
    assert all(isinstance(line["timestamp"], str) for line in log_lines(process))


async def test_text_logs_carry_the_request_id_too(tmp_path: Path) -> None:
    process = ServerProcess("--memory", "--log-format", "text", "--log-level", "info", cwd=tmp_path).start()
    try:
        remote = Remote(process.base_url, process.ws_url)
        await remote.http.get("/health", headers={"X-Request-ID": "obs-text-1"})
        await remote.close()
        for _ in range(50):
            if "[obs-text-1]" in process.output():
                break
            await asyncio.sleep(0.1)
        assert re.search(r"INFO uvicorn.access \[obs-text-1\] .*GET /health", process.output())
    finally:
        process.stop()


def test_statement_timings_are_exposed_as_a_cumulative_prometheus_histogram() -> None:
    timings = _Timings("t_seconds", "test", (0.001, 0.01))
    registry = CollectorRegistry()
    registry.register(timings)
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):  # a value on a bound counts in that bound's bucket
        timings.observe(seconds)
    text = generate_latest(registry).decode()
    samples = dict(re.findall(r"^(t_seconds_\w+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE))
    assert samples['t_seconds_bucket{le="0.001"}'] == "2.0"
    assert samples['t_seconds_bucket{le="0.01"}'] == "4.0"
    assert samples['t_seconds_bucket{le="+Inf"}'] == "5.0"
    assert samples["t_seconds_count"] == "5.0"
    assert float(samples["t_seconds_sum"]) == pytest.approx(0.5135)


def test_request_counts_are_exposed_as_litestars_middleware_exposed_them() -> None:
    counts = RequestCounts(prefix="r", app_name="app", buckets=(0.01, 0.1))
    registry = CollectorRegistry()
    registry.register(counts)
    counts.started("POST", "/api/messages")
    counts.started("POST", "/api/messages")
    counts.finished("POST", "/api/messages", 201, 0.005)
    counts.finished("POST", "/api/messages", 201, 0.05)
    counts.started("GET", "/api/users/me")  # still in flight when scraped
    text = generate_latest(registry).decode()
    assert "r_requests_error" not in text  # no server error yet: no family, as with Litestar's
    samples = dict(re.findall(r"^(r_\w+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE))
    post = 'app_name="app",method="POST",path="/api/messages",status_code="201"'
    assert samples[f"r_requests_total{{{post}}}"] == "2.0"
    assert f"r_requests_created{{{post}}}" in samples
    bucket = 'r_request_duration_seconds_bucket{{app_name="app",le="{}",method="POST",path="/api/messages",status_code="201"}}'
    assert samples[bucket.format("0.01")] == "1.0"  # labels in name order, as prometheus_client writes them
    assert samples[bucket.format("0.1")] == "2.0"
    assert samples[bucket.format("+Inf")] == "2.0"
    assert float(samples[f"r_request_duration_seconds_sum{{{post}}}"]) == pytest.approx(0.055)
    assert f"r_request_duration_seconds_created{{{post}}}" in samples
    in_flight = 'app_name="app",method="GET",path="/api/users/me",status_code="200"'
    assert samples[f"r_requests_in_progress{{{in_flight}}}"] == "1.0"
    assert (
        samples['r_requests_in_progress{app_name="app",method="POST",path="/api/messages",status_code="200"}'] == "0.0"
    )

    counts.started("POST", "/api/messages")
    counts.finished("POST", "/api/messages", 503, 0.001)
    text = generate_latest(registry).decode()
    failed = 'app_name="app",method="POST",path="/api/messages",status_code="503"'
    assert f"r_requests_error_total{{{failed}}} 1.0" in text


async def test_each_request_is_counted_under_its_route_and_status() -> None:
    path = 'path="/api/messages/{conversation_id}"'
    async with AsyncTestClient(create_app(Settings(memory=True))) as client:

        async def count(status: int) -> float:
            text = (await client.get("/metrics")).text
            series = rf'^convocore_requests_total\{{[^}}]*{re.escape(path)},status_code="{status}"\}} (\S+)$'
            found = re.search(series, text, re.MULTILINE)
            return float(found[1]) if found else 0.0

        unauthenticated, not_found = await count(401), await count(404)
        await client.get("/api/messages/nowhere/")  # no token: 401
        credentials = {"username": "metrics", "password": "correct horse"}
        assert (await client.post("/api/register/", json=credentials)).status_code == 201
        token = (await client.post("/api/login/", json=credentials)).json()["access_token"]
        await client.get("/api/messages/nowhere/", headers={"Authorization": f"Bearer {token}"})  # 404
        assert await count(401) == unauthenticated + 1
        assert await count(404) == not_found + 1
        text = (await client.get("/metrics")).text
        in_flight = rf'^convocore_requests_in_progress\{{[^}}]*{re.escape(path)},status_code="200"\}} (\S+)$'
        assert float(re.search(in_flight, text, re.MULTILINE)[1]) == 0.0  # type: ignore[index]


async def test_a_request_refused_by_a_middleware_is_counted_under_its_status() -> None:
    # The HTTP budgets refuse from a middleware, so the 429 is made outside the request metrics.
    # The metrics are the process's: other tests' requests count too, hence the differences.
    pattern = r'^convocore_requests_total\{[^}]*path="/api/users/me",status_code="(\d+)"\} (\S+)$'
    async with AsyncTestClient(create_app(Settings(memory=True, http_rate_per_minute=2))) as client:

        async def counted() -> dict[str, float]:
            text = (await client.get("/metrics")).text
            return {status: float(value) for status, value in re.findall(pattern, text, re.MULTILINE)}

        before = await counted()
        credentials = {"username": "budgeted", "password": "correct horse"}
        assert (await client.post("/api/register/", json=credentials)).status_code == 201
        auth = {
            "Authorization": f"Bearer {(await client.post('/api/login/', json=credentials)).json()['access_token']}"
        }
        statuses = [(await client.get("/api/users/me/", headers=auth)).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        after = await counted()
    assert after.get("200", 0) - before.get("200", 0) == 2
    assert after.get("429", 0) - before.get("429", 0) == 2
