"""Log lines as text or as JSON objects, each carrying the id of the request that produced it.

Every HTTP request and WebSocket session gets a request id: the client's ``X-Request-ID`` when it
is sane, else a fresh one. It is echoed in the response (or the socket's handshake) headers and
kept in a context variable, so everything logged while serving it, including tasks it starts,
names it.
"""

import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
request_id: ContextVar[str | None] = ContextVar("convocore_request_id", default=None)
_SANE = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_PROCESS_HALF = secrets.token_hex(8)
_COUNT = itertools.count()
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def new_request_id(offered: str | None) -> str:
    """The client's id when it is short and harmless in a log line, else a fresh one."""
    if offered is not None and _SANE.fullmatch(offered):
        return offered
    # 32 hex digits, unique: this process's random half, then a count (uuid4 per request read
    # the OS's random source each time, 5% of a REST send's CPU).
    return f"{_PROCESS_HALF}{next(_COUNT):016x}"


class RequestIds:
    """ASGI middleware: a request id per HTTP request and per WebSocket session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == ScopeType.HTTP:
            return self._http(scope, receive, send)
        if kind != ScopeType.WEBSOCKET:
            return self.app(scope, receive, send)
        # A socket has the server's task to itself, for its whole life: the id stays set in that
        # task until it ends, and no frame of this middleware is kept alive meanwhile (the next
        # app's coroutine is handed back, not awaited here).
        rid = request_id_of(scope)
        request_id.set(rid)
        return self.app(scope, receive, _sending_id(send, rid))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id_of(scope)
        token = request_id.set(rid)
        try:
            await self.app(scope, receive, _sending_id(send, rid))
        finally:
            request_id.reset(token)


def request_id_of(scope: Scope) -> str:
    """The request's id: its ``X-Request-ID`` header's when sane, else a fresh one."""
    offered = next((value for name, value in scope["headers"] if name == HEADER.encode()), None)
    return new_request_id(offered.decode("latin-1") if offered is not None else None)


def _sending_id(send: Send, rid: str) -> Send:
    header = (HEADER.encode(), rid.encode())

    async def send_with_id(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            raw: dict[str, Any] = message  # type: ignore[assignment]  # ASGI's headers: a list of pairs
            kept = [(name, value) for name, value in raw.get("headers") or () if name.lower() != header[0]]
            raw["headers"] = [*kept, header]
        await send(message)

    return send_with_id


class WithRequestId(logging.Filter):
    """Puts the current request id on every record (``-`` outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if rid in (None, "-") else rid,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# Credentials as they appear in lines other code makes: a token in a URL (uvicorn's access line
# for a socket, websockets' handshake at debug level), an Authorization header (as text or as
# ASGI's byte pairs), a bearer token, tokens and passwords in a JSON body.
_SECRETS = re.compile(
    r"(?i)(\b(?:access_|refresh_)?token=)[^&\s\"'\\]+"
    r"|(authorization[\"']?[\s:,=]{0,4}(?:b?[\"'])?(?:\w+\s+)?)[^\s\"'\\]+"
    r"|(\bbearer\s+)[^\s\"'\\]+"
    r"|(\"(?:access_token|refresh_token|password)\\?\"\s*:\s*\\?\")[^\"\\]*"
)


def redact(text: str) -> str:
    """``text`` with every credential in it replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda found: next(g for g in found.groups() if g is not None) + "[redacted]", text)


class Redacting(logging.Formatter):
    """Formats as ``inner`` does, then redacts the whole line (message and traceback alike):
    no credential reaches the log at any level, whoever made the line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


def configure_logging(*, level: str, log_format: str) -> None:
    """One handler on the root logger for everything: ours, uvicorn's, Litestar's, warnings."""
    handler = logging.StreamHandler()
    handler.addFilter(WithRequestId())
    inner = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(Redacting(inner))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
