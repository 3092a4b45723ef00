"""The hot routes (``entrypoints/hot.py``) answer exactly as Litestar does.

Two apps on two fresh stores of the storage under test (SQLite by default), with the same
counted ids and frozen clock, get the same script of requests: one answers the hot routes
itself, the other leaves everything to Litestar. Every answer must match byte for byte: status,
headers, body. Each step also says whether the hot path should have answered it or passed it
on, and that is checked too, so a hot path that passed everything on could not pass.
"""

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from dependency_injector import providers
from litestar.testing import AsyncTestClient

from convocore.entrypoints.app import ConvocoreApp, build_container, create_app
from convocore.entrypoints.logs import request_id
from convocore.entrypoints.metrics import process_metrics
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING
from tests.integration.storage import storage_for
from tests.unit.wiring import FrozenClock

LIMITS: dict[str, Any] = {"auth_rate_per_minute": 1_000_000, "http_rate_per_minute": 60, "send_limit": 12}


class CountedIds:
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._next):012d}"


@dataclass
class Side:
    """One app, with the tokens of its people and how many requests it passed to Litestar."""

    app: ConvocoreApp
    client: AsyncTestClient[Any]
    tokens: dict[str, str] = field(default_factory=dict)
    passed_on: int = 0


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    hot: bool  # answered by the hot path (True) or passed on to Litestar (False)
    body: bytes | list[bytes] = b""  # a list: sent in chunks, without Content-Length
    who: str | None = "ann"  # whose token; None: no Authorization header
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


@contextmanager
def two_stores(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    with (
        storage_for(default="sqlite", tmp=_dir(tmp_path / "hot")) as hot,
        storage_for(default="sqlite", tmp=_dir(tmp_path / "framework")) as framework,
    ):
        yield hot.settings, framework.settings


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _app(storage: dict[str, Any], *, hot_routes: bool, **settings: Any) -> ConvocoreApp:
    values: dict[str, Any] = {**storage, **FAST_HASHING, **LIMITS, **settings}
    configured = Settings(**values)
    container = build_container(configured)
    container.ids.override(providers.Object(CountedIds()))
    container.clock.override(providers.Object(FrozenClock()))
    app = create_app(configured, container=container, hot_routes=hot_routes)
    assert isinstance(app, ConvocoreApp)
    return app


async def _started(stack: AsyncExitStack, app: ConvocoreApp) -> Side:
    client = await stack.enter_async_context(AsyncTestClient(app))
    side = Side(app, client)
    for name in ("ann", "bob", "cyd"):
        credentials = {"username": name, "password": "correct horse"}
        assert (await client.post("/api/register/", json=credentials)).status_code == 201
        side.tokens[name] = (await client.post("/api/login/", json=credentials)).json()["access_token"]
    team = {"kind": "group", "title": "team", "members": [], "public": False}
    for owner in ("ann", "cyd"):
        created = await client.post("/api/conversations/", json=team, headers=_bearer(side.tokens[owner]))
        assert created.status_code == 201, created.text
    if app.hot_routes is not None:
        hot = app.hot_routes
        fallback = hot._fallback  # type: ignore[attr-defined]

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            side.passed_on += 1
            await fallback(scope, receive, send)

        hot._fallback = counted  # type: ignore[attr-defined]
    return side


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _call(side: Side, step: Step, number: int) -> list[dict[str, Any]]:
    given = {name for name, _ in step.headers}
    headers = [(b"x-request-id", f"step-{number}".encode()), *step.headers]
    if b"host" not in given:
        headers.append((b"host", b"testserver"))
    if step.who is not None:
        headers.append((b"authorization", f"Bearer {side.tokens[step.who]}".encode()))
    chunks = step.body if isinstance(step.body, list) else [step.body]
    if not isinstance(step.body, list) and step.method == "POST":
        headers.append((b"content-length", str(len(step.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": step.method,
        "root_path": "",
        "path": step.path,
        "raw_path": step.path.encode(),
        "query_string": step.query,
        "headers": headers,
    }
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that sent its whole request and waits
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    before = side.passed_on
    # On the client's event loop, where the app's lifespan opened its storage (an asyncpg
    # connection belongs to the loop that made it), as the client's own requests run.
    with side.client.portal() as portal:
        portal.call(side.app, scope, receive, send)
    if side.app.hot_routes is not None:
        assert (side.passed_on == before) == step.hot, f"step {number} {step}: hot path {'not ' * step.hot}taken"
    return sent


def _comparable(messages: list[dict[str, Any]]) -> list[Any]:
    """The messages as sent, but for two things no app decides alone: Retry-After is rounded to
    tens of seconds (a window's remainder, read on the real monotonic clock, can cross a second
    between the two apps), and a 405's Allow lists its methods sorted (Litestar lists them from
    a set)."""
    out: list[Any] = []
    for message in messages:
        message = dict(message)
        if "headers" in message:
            message["headers"] = sorted(_comparable_header(name, value) for name, value in message["headers"])
        out.append(message)
    return out


def _comparable_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name == b"retry-after":
        return name, b"%d" % round(int(value), -1)
    if name == b"allow":
        return name, b", ".join(sorted(value.split(b", ")))
    return name, value


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


C1 = "00000000-0000-4000-8000-000000000007"  # ann's group (ids: 3 users, 3 sessions, then it)
C2 = "00000000-0000-4000-8000-000000000008"  # cyd's group


def _script() -> list[Step]:
    send = "/api/messages/"
    good = {"conversation_id": C1, "body": "hello"}
    steps = [
        Step("POST", send, True, _json(good)),
        Step("POST", "/api/messages", True, _json(good | {"client_id": "c-1"})),
        Step("POST", send, True, _json(good | {"client_id": "c-1", "body": "again"})),  # replay: 200
        Step("POST", send, True, _json(good | {"reply_to": 1})),
        Step("POST", send, True, _json(good | {"reply_to": 999})),  # no such message
        Step("POST", send, True, _json({"conversation_id": C2, "body": "not mine"})),
        Step("POST", send, True, _json({"conversation_id": "nope", "body": "x"})),
        Step("POST", send, True, _json(good), who="bob"),  # not a member
        Step("POST", send, True, b'{"conversation_id": "%s", "body": "dup", "body": "last"}' % C1.encode()),
        # What the strict decoder refuses goes to Litestar, which may still accept it (lax ints).
        Step("POST", send, False, _json(good | {"reply_to": "1"})),
        Step("POST", send, False, _json(good | {"extra": 1})),
        Step("POST", send, False, _json({"body": "no conversation"})),
        Step("POST", send, False, _json(good | {"body": ""})),
        Step("POST", send, False, _json(good | {"body": "x" * 5000})),
        Step("POST", send, False, b"{not json"),
        Step("POST", send, False, b""),
        Step("POST", send, False, b"[" * 5000 + b"]" * 5000),
        Step("POST", send, False, b'{"conversation_id": "%s", "body": "%s"}' % (C1.encode(), b"y" * 70_000)),
        Step("POST", send, False, [b'{"conversation_id": "', C1.encode() + b'", "body": "chunked"}']),
        Step("POST", send, False, _json(good), who=None),
        Step("POST", send, True, _json(good), headers=((b"authorization", b"Bearer not-a-token"),), who=None),
        Step("POST", send, False, _json(good), headers=((b"authorization", b"Basic YW5uOng="),), who=None),
        Step("POST", send, False, _json(good), headers=((b"host", b"bad host/"),)),
    ]
    history = f"/api/messages/{C1}/"
    steps += [
        Step("GET", history, True),
        Step("GET", history.rstrip("/"), True, query=b"limit=2"),
        Step("GET", history, True, query=b"before=3&limit=1"),
        Step("GET", history, True, query=b"after=1&limit=200"),
        Step("GET", history, True, query=b"before=0"),
        Step("GET", f"/api/messages/{C2}/", True),  # not a member
        Step("GET", "/api/messages/nope/", True),
        Step("GET", history, True, who="bob"),
        Step("GET", history, False, query=b"limit=0"),
        Step("GET", history, False, query=b"limit=201"),
        Step("GET", history, False, query=b"limit=abc"),
        Step("GET", history, False, query=b"limit=-1"),
        Step("GET", history, False, query=b"limit=1&limit=2"),
        Step("GET", history, False, query=b"other=1"),
        Step("GET", history, False, who=None),
        Step("GET", history, False, headers=((b"host", b"a b"),)),
        Step("GET", history, True, headers=((b"authorization", b"Bearer not-a-token"),), who=None),
        Step("GET", "/api/messages/", False),
        Step("GET", f"/api/messages/{C1}/1/", False),
    ]
    # Spend the send limit (12 per 10 s) and then the HTTP budget (60 a minute) of cyd.
    steps += [Step("POST", send, True, _json({"conversation_id": C2, "body": f"{i}"}), who="cyd") for i in range(13)]
    steps += [Step("GET", f"/api/messages/{C2}/", True, who="cyd") for _ in range(48)]
    return steps


async def _run_both(tmp_path: Path, steps: list[Step], **settings: Any) -> tuple[list[Any], list[Any], list[Side]]:
    async with AsyncExitStack() as stack:
        with two_stores(tmp_path) as (hot_store, framework_store):
            hot = await _started(stack, _app(hot_store, hot_routes=True, **settings))
            framework = await _started(stack, _app(framework_store, hot_routes=False, **settings))
            got: tuple[list[Any], list[Any]] = ([], [])
            for number, step in enumerate(steps):  # alternated, so both see the same moments
                for side, answers in zip((hot, framework), got, strict=True):
                    answers.append(_comparable(_call(side, step, number)))
            await stack.aclose()
            return got[0], got[1], [hot, framework]


async def test_the_hot_routes_answer_byte_for_byte_as_litestar(tmp_path: Path) -> None:
    steps = _script()
    hot, framework, _ = await _run_both(tmp_path, steps)
    for number, (step, mine, theirs) in enumerate(zip(steps, hot, framework, strict=True)):
        assert mine == theirs, f"step {number}: {step}"
    statuses = [answer[0]["status"] for answer in hot]
    # The script reaches every outcome it means to: created, replayed, each problem (a stranger's
    # conversation is a 404, not a 403), both budgets.
    assert {200, 201, 400, 401, 404, 405, 413, 422, 429} <= set(statuses), statuses
    # cyd's 13th send passes the send limit (12 per 10 s); the 48 pages after them, with the
    # conversation made at the start, pass the HTTP budget (60 a minute) at the last two.
    sends, pages = statuses[-61:-48], statuses[-48:]
    assert sends == [201] * 12 + [429] and pages == [200] * 46 + [429, 429], statuses[-61:]


async def test_they_count_requests_as_the_framework_does(tmp_path: Path) -> None:
    counts = process_metrics().requests
    steps = [s for s in _script() if s.hot][:30]

    def snapshot() -> dict[Any, int]:
        return {key: series[0] for key, series in counts._done.items()}

    async with AsyncExitStack() as stack:
        with two_stores(tmp_path) as (hot_store, framework_store):
            deltas = []
            for store, on in ((hot_store, True), (framework_store, False)):
                side = await _started(stack, _app(store, hot_routes=on))
                before = snapshot()
                for number, step in enumerate(steps):
                    _call(side, step, number)
                after = snapshot()
                deltas.append({key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)})
    assert deltas[0] == deltas[1]
    assert deltas[0][("POST", "/api/messages", 201)] >= 3
    assert deltas[0][("GET", "/api/messages/{conversation_id}", 200)] >= 3
    assert counts._in_progress[("POST", "/api/messages")] == 0


async def test_an_unexpected_error_is_a_logged_500_with_the_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str | None] = []

    class Broken:
        async def execute(self, **_: Any) -> Any:
            seen.append(request_id.get())
            raise RuntimeError("the disk is on fire")

    steps = [Step("POST", "/api/messages/", True, _json({"conversation_id": C1, "body": "x"}))]
    async with AsyncExitStack() as stack:
        with two_stores(tmp_path) as (hot_store, framework_store):
            answers = []
            for store, on in ((hot_store, True), (framework_store, False)):
                app = _app(store, hot_routes=on)
                app.state.container.post_message.override(providers.Object(Broken()))
                side = await _started(stack, app)
                answers.append(_comparable(_call(side, steps[0], 7)))
    assert answers[0] == answers[1]
    assert answers[0][0]["status"] == 500
    assert seen == ["step-7", "step-7"]
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error on POST /api/messages"]
    assert len(logged) == 2 and all(r.exc_info for r in logged)


async def test_cross_origin_requests_are_left_to_litestar(tmp_path: Path) -> None:
    origin = ((b"origin", b"https://app.example"),)
    steps = [
        Step("POST", "/api/messages/", False, _json({"conversation_id": C1, "body": "x"}), headers=origin),
        Step("GET", f"/api/messages/{C1}/", False, headers=origin),
        Step("GET", f"/api/messages/{C1}/", True),
    ]
    hot, framework, _ = await _run_both(tmp_path, steps, cors_origins=("https://app.example",))
    assert hot == framework
    assert (b"access-control-allow-origin", b"https://app.example") in hot[0][0]["headers"]
