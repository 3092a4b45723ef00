"""The two hottest routes answered below the framework: sending a message (``POST /api/messages/``)
and a page of history (``GET /api/messages/{conversation_id}/``).

Through Litestar, the layers around these handlers (routing, the middleware chain, dependency
and signature resolution, the response object, the ``send`` wrappers) cost as much CPU as the
post itself (docs/performance.md, lever 23). ``HotRoutes`` answers the ordinary request
itself and gives the same answer Litestar would, byte for byte but for the request id: the same
status, headers and JSON, the HTTP budget charged once, the request counted in the request
metrics under the route's template, problem details for every error.

Anything it is not sure of goes to Litestar, untouched, before any side effect: a request
without a bearer token, a body that does not decode strictly into the route's schema, an
unknown or repeated query parameter, a body without a Content-Length or over the size limit,
a malformed Host, a CORS request, a mounted app (``root_path``). The body read so far is
replayed to Litestar, so it answers as if it had read it itself, problem details and all. From
the budget charge on, the request is this module's to finish; its errors are answered as the
app's exception handlers answer them. ``tests/integration/api/test_hot_routes.py`` sends the
same requests to an app with and without it and compares the bytes.
"""

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar._asgi.utils import is_valid_host  # the router's own check, so both refuse the same hosts

from convocore.domain.errors import DomainError
from convocore.entrypoints import schemas as s
from convocore.entrypoints.container import Container
from convocore.entrypoints.deps import bearer_of, header_of
from convocore.entrypoints.errors import PROBLEM_JSON, domain_problem, internal_problem
from convocore.entrypoints.logs import HEADER as REQUEST_ID
from convocore.entrypoints.logs import request_id, request_id_of
from convocore.entrypoints.metrics import RequestCounts
from convocore.entrypoints.security import SECURITY_HEADERS, HttpBudgets

ASGI = Callable[[Any, Any, Any], Awaitable[None]]

SEND_PATHS = frozenset({"/api/messages/", "/api/messages"})
SEND_TEMPLATE = "/api/messages"
HISTORY_PATH = re.compile(r"/api/messages/([^/]+)/?")
HISTORY_TEMPLATE = "/api/messages/{conversation_id}"
# A query value taken here: a plain decimal (Litestar's int() also takes signs, spaces and
# underscores; those go to it).
_DECIMAL = re.compile(rb"[0-9]{1,18}")
_HISTORY_BOUNDS = {b"before": (0, None), b"after": (0, None), b"limit": (1, 200)}

_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", PROBLEM_JSON.encode())]
_SECURITY = [(name.encode(), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()]
_SEND_BODY = msgspec.json.Decoder(s.PostMessageIn)
_encode = msgspec.json.Encoder().encode


class HotRoutes:
    """An ASGI app in front of ``fallback`` (the Litestar app) for HTTP requests."""

    def __init__(
        self,
        fallback: ASGI,
        *,
        container: Container,
        budgets: HttpBudgets,
        counts: RequestCounts,
        max_body: int,
        cors: bool,
    ) -> None:
        self._fallback, self._container, self._budgets = fallback, container, budgets
        self._counts, self._max_body, self._cors = counts, max_body, cors

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        method, path = scope["method"], scope["path"]
        host = header_of(scope, b"host")
        if (
            scope.get("root_path")
            or (host is not None and not is_valid_host(host))  # Litestar's router answers 400
            or (self._cors and header_of(scope, b"origin") is not None)
        ):
            pass
        elif method == "POST" and path in SEND_PATHS:
            return self._send(scope, receive, send)
        elif method == "GET" and (found := HISTORY_PATH.fullmatch(path)):
            query = _history_query(scope["query_string"])
            if query is not None:
                return self._history(scope, receive, send, found[1], query)
        return self._fallback(scope, receive, send)

    async def _send(self, scope: Any, receive: Any, send: Any) -> None:
        token, size = bearer_of(scope), _content_length(scope)
        if not token or size is None or size > self._max_body:
            return await self._fallback(scope, receive, send)
        received: list[Any] = []
        chunks: list[bytes] = []
        length = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client went away: Litestar says so
                return await self._fallback(scope, _replaying(received, receive), send)
            chunk = message.get("body", b"")
            chunks.append(chunk)
            length += len(chunk)
            if length > size:  # more than Content-Length said (no server passes that on): Litestar decides
                return await self._fallback(scope, _replaying(received, receive), send)
            if not message.get("more_body", False):
                break
        try:
            data = _SEND_BODY.decode(b"".join(chunks))
        except (msgspec.MsgspecError, RecursionError):  # Litestar's problem details say what is wrong
            return await self._fallback(scope, _replaying(received, receive), send)

        async def post(user_id: str) -> tuple[int, bytes]:
            posted = await self._container.post_message().execute(
                user_id=user_id,
                conversation_id=data.conversation_id,
                body=data.body,
                client_id=data.client_id,
                reply_to=data.reply_to,
            )
            return 201 if posted.created else 200, _encode(s.message_out(posted.message))

        await self._answer(scope, send, SEND_TEMPLATE, token, post)

    async def _history(
        self, scope: Any, receive: Any, send: Any, conversation_id: str, query: dict[bytes, int]
    ) -> None:
        token = bearer_of(scope)
        if not token:
            return await self._fallback(scope, receive, send)

        async def page(user_id: str) -> tuple[int, bytes]:
            items, has_more = await self._container.list_messages().execute(
                user_id=user_id,
                conversation_id=conversation_id,
                before=query.get(b"before"),
                after=query.get(b"after"),
                limit=query.get(b"limit", 50),
            )
            return 200, _encode(s.MessagePage(items=[s.message_out(m) for m in items], has_more=has_more))

        await self._answer(scope, send, HISTORY_TEMPLATE, token, page)

    async def _answer(
        self, scope: Any, send: Any, template: str, token: str, handle: Callable[[str], Awaitable[tuple[int, bytes]]]
    ) -> None:
        """What the middleware chain and the handler do, in their order: request id, metrics,
        the HTTP budget, authentication, the handler; every error as the exception handlers
        answer it."""
        rid = request_id_of(scope)
        reset = request_id.set(rid)
        method = scope["method"]
        self._counts.started(method, template)
        began = time.perf_counter()
        status = 500
        try:
            headers = _JSON
            try:
                await self._budgets.charge(scope)
                principal = await self._container.authenticate().execute(access_token=token)
                status, body = await handle(principal.user_id)
            except DomainError as error:
                problem, extra = domain_problem(error)
                status, body = problem.status, _encode(problem)
                headers = _PROBLEM + [(name.lower().encode(), value.encode()) for name, value in extra.items()]
            except Exception as error:  # answered and logged as internal_error_handler does
                path = scope["path"].rstrip("/")  # as Litestar's router leaves it (routes have no "//")
                status, body = 500, _encode(internal_problem(method, path, error))
                headers = _PROBLEM
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        *headers,
                        (b"content-length", str(len(body)).encode()),
                        (REQUEST_ID.encode(), rid.encode()),
                        *_SECURITY,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            self._counts.finished(method, template, status, time.perf_counter() - began)
            request_id.reset(reset)


def _content_length(scope: Any) -> int | None:
    value = header_of(scope, b"content-length")
    return int(value) if value is not None and _DECIMAL.fullmatch(value) else None


def _history_query(raw: bytes) -> dict[bytes, int] | None:
    """``before``, ``after`` and ``limit`` as plain decimals within their bounds, each at most
    once; None for anything else (Litestar answers it)."""
    query: dict[bytes, int] = {}
    if not raw:
        return query
    for pair in raw.split(b"&"):
        name, equals, value = pair.partition(b"=")
        bounds = _HISTORY_BOUNDS.get(name)
        if bounds is None or not equals or name in query or not _DECIMAL.fullmatch(value):
            return None
        number, (low, high) = int(value), bounds
        if number < low or (high is not None and number > high):
            return None
        query[name] = number
    return query


def _replaying(received: list[Any], receive: Any) -> Any:
    """``receive`` for the fallback: what was already read, then the server's own."""
    pending = list(received)

    async def replay() -> Any:
        return pending.pop(0) if pending else await receive()

    return replay


__all__ = ["HotRoutes"]
