"""The Litestar application: routes, error map, OpenAPI, and the lifespan of the adapters."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from convocore import __version__
from convocore.adapters.sql.unit_of_work import create_schema
from convocore.entrypoints import http_accounts, http_conversations, http_messages
from convocore.entrypoints.container import Container
from convocore.entrypoints.deps import provide_container
from convocore.entrypoints.errors import EXCEPTION_HANDLERS
from convocore.entrypoints.hub import Hub
from convocore.entrypoints.settings import Settings
from convocore.entrypoints.ws import chat_socket


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
        }
    )
    return container


@get("/health", tags=["operations"], summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    container = container or build_container(settings)
    hub = Hub()
    container.broadcaster().add_listener(hub.dispatch)

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
        lifespan=[storage],
        state=State(state),
    )
