"""The Litestar application: routes, error map, OpenAPI, and the lifespan of the adapters."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from convocore import __version__
from convocore.adapters.redis_broadcaster import RedisBroadcaster
from convocore.adapters.sql import migrate
from convocore.adapters.sql.unit_of_work import wal_checkpoints
from convocore.application.realtime import Backlog
from convocore.entrypoints import http_accounts, http_conversations, http_messages, http_operations
from convocore.entrypoints.allow import allow_every_method
from convocore.entrypoints.asyncapi import asyncapi_schema
from convocore.entrypoints.container import Container
from convocore.entrypoints.deps import provide_container
from convocore.entrypoints.errors import EXCEPTION_HANDLERS
from convocore.entrypoints.hot import HotRoutes
from convocore.entrypoints.hub import SERVER_SEND, Hub
from convocore.entrypoints.logs import RequestIds
from convocore.entrypoints.metrics import MetricsController, process_metrics, request_metrics
from convocore.entrypoints.openapi import ClosedRequestBodies
from convocore.entrypoints.security import HttpBudgets, add_security_headers, http_budgets
from convocore.entrypoints.settings import Settings
from convocore.entrypoints.web import index, static_files
from convocore.entrypoints.ws import chat_socket, user_socket


class ConvocoreApp(Litestar):
    """Litestar, plus the ASGI server's own ``send`` in each socket's scope: data frames go
    straight to it (hub.Connection). Through the framework each frame passed four wrappers
    (the socket's, the app's before-send hooks, the exception middleware's, the request-id
    middleware's), which cost more than writing the frame; accepting and closing still go
    through the framework, which tracks the socket's state by them. And the hottest HTTP
    routes, answered below the framework (``hot.HotRoutes``)."""

    hot_routes: ASGIApp | None = None  # hot.HotRoutes, in front of the framework for HTTP

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and self.hot_routes is not None:
            await self.hot_routes(scope, receive, send)
            return
        if kind == "websocket":
            scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)

    async def framework(self, scope: Any, receive: Any, send: Any) -> None:
        """Litestar itself: what ``HotRoutes`` passes on."""
        await super().__call__(scope, receive, send)


class HttpOnly:
    """Middleware for HTTP requests only. A socket goes straight on to the app: not even a
    pass-through frame of the middleware stays alive for the socket's whole life (``__call__``
    hands back the next app's coroutine rather than awaiting it)."""

    def __init__(self, app: ASGIApp, *, inner: DefineMiddleware) -> None:
        self._app, self._http = app, inner(app)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return (self._http if scope["type"] == ScopeType.HTTP else self._app)(scope, receive, send)


def http_only(middleware: DefineMiddleware) -> DefineMiddleware:
    return DefineMiddleware(HttpOnly, inner=middleware)


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(
        {
            "storage": settings.storage,
            "database_url": settings.database_url,
            "access_ttl_s": settings.access_ttl_s,
            "refresh_ttl_s": settings.refresh_ttl_s,
            "auth_cache_s": settings.auth_cache_s,
            "argon2_time_cost": settings.argon2_time_cost,
            "argon2_memory_cost": settings.argon2_memory_cost,
            "broadcaster": "redis" if settings.redis_url else "memory",
            "redis_url": settings.redis_url,
            "redis_prefix": settings.redis_prefix,
            "redis_presence_prefix": f"{settings.redis_prefix}:presence",
            "presence_ttl_s": settings.presence_ttl_s,
            "typing_burst": settings.typing_burst,
            "typing_window_s": settings.typing_window_s,
            "send_limit": settings.send_limit,
            "send_window_s": settings.send_window_s,
            "sqlite_busy_timeout_ms": settings.sqlite_busy_timeout_ms,
        }
    )
    return container


Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def _wire_realtime(container: Container, settings: Settings) -> tuple[Hub, Lifespan]:
    """The hub hears this process's events from the broadcaster, and other processes' events
    (already encoded) from Redis when there is one."""

    async def fetch(conversation_id: str, after: int, limit: int) -> Backlog:
        return await container.catch_up().execute(conversation_id=conversation_id, after=after, limit=limit)

    broadcaster = container.broadcaster()
    presence = container.presence()
    if isinstance(broadcaster, RedisBroadcaster):

        async def session_alive(session_id: str) -> bool:
            return await container.session_alive().execute(session_id=session_id)

        hub = Hub(
            fetch=fetch,
            resync_limit=settings.resync_limit,
            follow=broadcaster.follow,
            unfollow=broadcaster.unfollow,
            session_alive=session_alive,
        )
        broadcaster.add_remote_listener(hub.dispatch_wire)
        broadcaster.on_resubscribed(hub.catch_up_all)
    else:
        hub = Hub(fetch=fetch, resync_limit=settings.resync_limit)
    broadcaster.add_listener(hub.dispatch)

    async def reap_forever() -> None:
        while True:
            await asyncio.sleep(settings.presence_ttl_s / 3)
            with contextlib.suppress(Exception):
                await container.track_presence().reap()

    @asynccontextmanager
    async def realtime(_: Litestar) -> AsyncIterator[None]:
        limiter = container.limiter()
        redis_parts = [broadcaster, presence, limiter] if isinstance(broadcaster, RedisBroadcaster) else []
        for part in redis_parts:
            await part.start()
        reaper = asyncio.create_task(reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await hub.close_all()
            for part in reversed(redis_parts):
                await part.stop()

    return hub, realtime


@get("/health", tags=["operations"], summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    settings: Settings | None = None, *, container: Container | None = None, hot_routes: bool = True
) -> "ConvocoreApp":
    """The app. ``hot_routes=False`` leaves every request to Litestar (for comparing the two)."""
    settings = settings or Settings.from_env()
    container = container or build_container(settings)
    budgets = HttpBudgets.of(settings, container.limiter())
    hub, realtime = _wire_realtime(container, settings)
    metrics = hub.observer = process_metrics()
    container.broadcaster().add_listener(metrics.published)

    @asynccontextmanager
    async def storage(_: Litestar) -> AsyncIterator[None]:
        if settings.storage != "sql":
            yield
            return
        engine = container.engine()
        metrics.watch(engine)
        try:
            # The embedded SQLite file follows the code by itself; a shared database changes only
            # when asked (--migrate, or `convocore migrate` as a deploy step) and is checked otherwise.
            if settings.migrate or engine.dialect.name == "sqlite":
                await migrate.upgrade(engine)
            else:
                await migrate.ensure_current(engine)
            await container.uow().find_triggers()
            with wal_checkpoints(engine):  # a SQLite file's checkpoints, off the event loop
                yield
        finally:
            container.uow().close()  # a SQLite file's own connection (SqliteUnitOfWork)
            await engine.dispose()

    state: dict[str, Any] = {"container": container, "hub": hub, "settings": settings}
    app = ConvocoreApp(
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
        dependencies={"container": Provide(provide_container, sync_to_thread=False)},
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
        middleware=[http_only(request_metrics(metrics)), http_only(http_budgets(budgets))],
        logging_config=None,  # logging belongs to the host: `convocore serve` sets it up (logs.py)
        before_send=[add_security_headers, allow_every_method],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        lifespan=[storage, realtime],
        state=State(state),
    )
    app.asgi_handler = RequestIds(app.asgi_handler)  # outside the router: unmatched paths get an id too
    if hot_routes:
        app.hot_routes = HotRoutes(
            app.framework,
            container=container,
            budgets=budgets,
            counts=metrics.requests,
            max_body=settings.max_request_bytes,
            cors=bool(settings.cors_origins),
        )
    return app
