"""The Litestar application: routes, error map, OpenAPI, and the lifespan of the adapters."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from convocore import __version__
from convocore.entrypoints import http_accounts, http_conversations, http_messages, http_operations
from convocore.entrypoints.allow import allow_every_method
from convocore.entrypoints.asyncapi import asyncapi_schema
from convocore.entrypoints.container import HANDLER_DEPENDENCIES, Container, build_container, observe
from convocore.entrypoints.deps import AUTHENTICATE, provide
from convocore.entrypoints.errors import EXCEPTION_HANDLERS
from convocore.entrypoints.logs import RequestIds
from convocore.entrypoints.metrics import MetricsController, request_metrics
from convocore.entrypoints.openapi import ClosedRequestBodies
from convocore.entrypoints.security import add_security_headers, http_budgets
from convocore.entrypoints.settings import Settings
from convocore.entrypoints.sockets import SERVER_SEND
from convocore.entrypoints.web import index, static_files
from convocore.entrypoints.ws import chat_socket, user_socket

__all__ = ["ConvocoreApp", "build_container", "create_app"]


class ConvocoreApp(Litestar):
    """Litestar with a request id for every HTTP request and socket (found or not: outside the
    router), and the ASGI server's own ``send`` in each socket's scope: a socket's data frames
    go straight to it (``sockets.AsgiOutlet``) rather than through the framework's send
    wrappers, which cost more than writing the frame. Accepting and closing go through the
    framework, which tracks the socket's state by them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._with_ids = RequestIds(super().__call__)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send
        await self._with_ids(scope, receive, send)


class HttpOnly:
    """Middleware for HTTP requests only. A socket goes straight on to the app: not even a
    pass-through frame of the middleware stays alive for the socket's whole life."""

    def __init__(self, app: ASGIApp, *, inner: DefineMiddleware) -> None:
        self._app, self._http = app, inner(app)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return (self._http if scope["type"] == ScopeType.HTTP else self._app)(scope, receive, send)


def http_only(middleware: DefineMiddleware) -> DefineMiddleware:
    return DefineMiddleware(HttpOnly, inner=middleware)


@get("/health", tags=["operations"], summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _lifespan(container: Container, settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        started = []
        try:
            for service in container.services():
                await service.start()
                started.append(service)
            reaper = asyncio.create_task(_reap_forever(container, settings.presence_ttl_s / 3))
            try:
                yield
            finally:
                reaper.cancel()
                await container.hub().close_all()
        finally:
            for service in reversed(started):
                await service.stop()

    return lifespan


async def _reap_forever(container: Container, every_s: float) -> None:
    """Announce offline the users of processes that died (their presence entries ran out)."""
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            await container.track_presence().reap()


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> ConvocoreApp:
    settings = settings or Settings.from_env()
    container = container or build_container(settings)
    observe(container)
    metrics = container.metrics()
    return ConvocoreApp(
        route_handlers=[
            http_accounts.router,
            http_conversations.router,
            http_messages.router,
            chat_socket,
            user_socket,
            asyncapi_schema,
            health,
            index,
            static_files,
            http_operations.ready,
            MetricsController,
        ],
        dependencies={name: provide(getattr(container, name)()) for name in HANDLER_DEPENDENCIES},
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Convocore",
            version=__version__,
            description="Real-time chat: accounts, conversations, membership and messages.",
            path="/schema",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
        ),
        plugins=[ClosedRequestBodies()],
        request_max_body_size=settings.max_request_bytes,
        middleware=[
            http_only(request_metrics(metrics)),
            http_only(http_budgets(container.http_budgets())),
        ],
        logging_config=None,  # logging belongs to the host: `convocore serve` sets it up (logs.py)
        before_send=[add_security_headers, allow_every_method],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        lifespan=[_lifespan(container, settings)],
        state=State({AUTHENTICATE: container.authenticate()}),
    )
