"""The Litestar application: routes, error map, OpenAPI, and the lifespan of the adapters."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from convocore import __version__
from convocore.adapters.redis_broadcaster import RedisBroadcaster
from convocore.adapters.sql.unit_of_work import create_schema
from convocore.application.realtime import Backlog
from convocore.entrypoints import http_accounts, http_conversations, http_messages
from convocore.entrypoints.asyncapi import asyncapi_schema
from convocore.entrypoints.container import Container
from convocore.entrypoints.deps import provide_container
from convocore.entrypoints.errors import EXCEPTION_HANDLERS
from convocore.entrypoints.hub import Hub
from convocore.entrypoints.settings import Settings
from convocore.entrypoints.ws import chat_socket, user_socket


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(
        {
            "storage": settings.storage,
            "database_url": settings.database_url,
            "access_ttl_s": settings.access_ttl_s,
            "refresh_ttl_s": settings.refresh_ttl_s,
            "argon2_time_cost": settings.argon2_time_cost,
            "argon2_memory_cost": settings.argon2_memory_cost,
            "broadcaster": "redis" if settings.redis_url else "memory",
            "redis_url": settings.redis_url,
            "redis_prefix": settings.redis_prefix,
            "redis_presence_prefix": f"{settings.redis_prefix}:presence",
            "presence_ttl_s": settings.presence_ttl_s,
            "typing_burst": settings.typing_burst,
            "typing_window_s": settings.typing_window_s,
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
        redis_parts = [broadcaster, presence] if isinstance(broadcaster, RedisBroadcaster) else []
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


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    container = container or build_container(settings)
    hub, realtime = _wire_realtime(container, settings)

    @asynccontextmanager
    async def storage(_: Litestar) -> AsyncIterator[None]:
        if settings.storage != "sql":
            yield
            return
        engine = container.engine()
        await create_schema(engine)
        try:
            yield
        finally:
            await engine.dispose()

    state: dict[str, Any] = {"container": container, "hub": hub, "settings": settings}
    return Litestar(
        route_handlers=[
            http_accounts.router,
            http_conversations.router,
            http_messages.router,
            chat_socket,
            user_socket,
            asyncapi_schema,
            health,
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
        request_max_body_size=settings.max_request_bytes,
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        lifespan=[storage, realtime],
        state=State(state),
    )
