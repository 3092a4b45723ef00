"""The one composition root: which adapter runs is decided here and nowhere else."""

import importlib
from collections.abc import Callable
from typing import Any

from dependency_injector import containers, providers
from sqlalchemy.exc import SQLAlchemyError

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import (
    InProcessBroadcaster,
    MemoryPresenceStore,
    MemoryRateLimiter,
    MemoryUnitOfWorkFactory,
)
from convocore.adapters.sql import migrate
from convocore.adapters.sql.storage import open_storage
from convocore.adapters.system import SecretTokenGenerator, SystemClock, UuidGenerator
from convocore.application import accounts, conversations, messages, operations
from convocore.application.realtime import use_cases as realtime
from convocore.application.realtime.hub import Hub
from convocore.domain.errors import DomainError
from convocore.entrypoints.metrics import process_metrics
from convocore.entrypoints.present import SocketFrames
from convocore.entrypoints.security import HttpBudgets
from convocore.entrypoints.settings import Settings
from convocore.entrypoints.uvicorn_sockets import UvicornWrites
from convocore.entrypoints.ws import Live


def _redis(adapter: str) -> Callable[..., Any]:
    """A Redis adapter's class, imported only where the settings name a Redis (the redis extra)."""

    def make(**options: Any) -> Any:
        module, _, name = adapter.rpartition(".")
        return getattr(importlib.import_module(f"convocore.adapters.redis.{module}"), name)(**options)

    return make


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidGenerator)
    tokens = providers.Singleton(SecretTokenGenerator)
    hasher = providers.Singleton(
        Argon2PasswordHasher, time_cost=config.argon2_time_cost, memory_cost=config.argon2_memory_cost
    )
    token_policy = providers.Singleton(
        accounts.TokenPolicy, access_ttl_s=config.access_ttl_s, refresh_ttl_s=config.refresh_ttl_s
    )
    metrics = providers.Singleton(process_metrics)

    # -- adapters ------------------------------------------------------------------------
    uow = providers.Selector(
        config.storage,
        memory=providers.Singleton(MemoryUnitOfWorkFactory),
        sql=providers.Singleton(
            open_storage,
            url=config.database_url,
            migrate=config.migrate,
            sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms,
            sqlite_synchronous=config.sqlite_synchronous,
        ),
    )
    broadcaster = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(InProcessBroadcaster),
        redis=providers.Singleton(
            _redis("broadcaster.RedisBroadcaster"), url=config.redis_url, prefix=config.redis_prefix
        ),
    )
    limiter = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(MemoryRateLimiter),
        redis=providers.Singleton(_redis("limiter.RedisRateLimiter"), url=config.redis_url, prefix=config.redis_prefix),
    )
    presence = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(MemoryPresenceStore),
        redis=providers.Singleton(
            _redis("presence.RedisPresenceStore"),
            url=config.redis_url,
            ttl_s=config.presence_ttl_s,
            prefix=config.redis_presence_prefix,
        ),
    )
    socket_writes = providers.Singleton(UvicornWrites, enabled=config.accelerate)
    # What the app starts, in this order, and stops in the other.
    services = providers.Selector(
        config.broadcaster,
        memory=providers.List(uow, broadcaster, socket_writes),
        redis=providers.List(uow, broadcaster, presence, limiter, socket_writes),
    )

    # -- use cases -----------------------------------------------------------------------
    register_user = providers.Singleton(accounts.RegisterUser, uow=uow, hasher=hasher, ids=ids, clock=clock)
    log_in = providers.Singleton(
        accounts.LogIn, uow=uow, hasher=hasher, ids=ids, tokens=tokens, clock=clock, policy=token_policy
    )
    principals = providers.Singleton(accounts.PrincipalCache, ttl_s=config.auth_cache_s)
    refresh_tokens = providers.Singleton(
        accounts.RefreshTokens,
        uow=uow,
        tokens=tokens,
        clock=clock,
        policy=token_policy,
        cache=principals,
        broadcaster=broadcaster,
    )
    authenticate = providers.Singleton(accounts.Authenticate, uow=uow, tokens=tokens, clock=clock, cache=principals)
    log_out = providers.Singleton(accounts.LogOut, uow=uow, clock=clock, broadcaster=broadcaster, cache=principals)
    get_user = providers.Singleton(accounts.GetUser, uow=uow)
    search_users = providers.Singleton(accounts.SearchUsers, uow=uow)

    start_conversation = providers.Singleton(
        conversations.StartConversation, uow=uow, broadcaster=broadcaster, ids=ids, clock=clock
    )
    list_inbox = providers.Singleton(conversations.ListInbox, uow=uow)
    get_conversation = providers.Singleton(conversations.GetConversation, uow=uow)
    update_conversation = providers.Singleton(conversations.UpdateConversation, uow=uow, broadcaster=broadcaster)
    add_member = providers.Singleton(conversations.AddMember, uow=uow, broadcaster=broadcaster, clock=clock)
    join_conversation = providers.Singleton(
        conversations.JoinConversation, uow=uow, broadcaster=broadcaster, clock=clock
    )
    remove_member = providers.Singleton(conversations.RemoveMember, uow=uow, broadcaster=broadcaster)
    change_role = providers.Singleton(conversations.ChangeRole, uow=uow, broadcaster=broadcaster)
    discover_public = providers.Singleton(conversations.DiscoverPublic, uow=uow)
    mark_read = providers.Singleton(conversations.MarkRead, uow=uow, broadcaster=broadcaster)

    post_message = providers.Singleton(
        messages.PostMessage,
        uow=uow,
        broadcaster=broadcaster,
        ids=ids,
        clock=clock,
        limiter=limiter,
        budget=providers.Factory(messages.Budget, limit=config.send_limit, window_s=config.send_window_s),
    )
    list_messages = providers.Singleton(messages.ListMessages, uow=uow)
    edit_message = providers.Singleton(messages.EditMessage, uow=uow, broadcaster=broadcaster, clock=clock)
    delete_message = providers.Singleton(messages.DeleteMessage, uow=uow, broadcaster=broadcaster, clock=clock)

    open_stream = providers.Singleton(realtime.OpenStream, uow=uow)
    list_memberships = providers.Singleton(realtime.ListMemberships, uow=uow)
    catch_up = providers.Singleton(realtime.CatchUp, uow=uow)
    signal_typing = providers.Singleton(
        realtime.SignalTyping,
        broadcaster=broadcaster,
        limiter=limiter,
        budget=providers.Factory(messages.Budget, limit=config.typing_burst, window_s=config.typing_window_s),
    )
    charge_resume = providers.Singleton(
        realtime.ChargeResume,
        limiter=limiter,
        budget=providers.Factory(messages.Budget, limit=config.send_limit, window_s=config.send_window_s),
    )
    track_presence = providers.Singleton(realtime.TrackPresence, uow=uow, presence=presence, broadcaster=broadcaster)
    who_is_online = providers.Singleton(realtime.WhoIsOnline, uow=uow, presence=presence)
    session_alive = providers.Singleton(realtime.SessionAlive, uow=uow, clock=clock)

    check_readiness = providers.Singleton(
        operations.CheckReadiness,
        probes=providers.Selector(
            config.broadcaster,
            memory=providers.Dict(database=uow),
            redis=providers.Dict(database=uow, redis=broadcaster),
        ),
    )
    http_budgets = providers.Singleton(
        HttpBudgets,
        limiter,
        auth=providers.Factory(messages.Budget, limit=config.auth_rate_per_minute, window_s=60),
        token=providers.Factory(messages.Budget, limit=config.http_rate_per_minute, window_s=60),
    )

    # -- the real-time engine and its sockets ----------------------------------------------
    hub = providers.Singleton(
        Hub,
        catch_up=catch_up,
        frames=providers.Singleton(SocketFrames),
        feed=broadcaster,
        session_alive=session_alive,
        resync_limit=config.resync_limit,
        max_streams_per_user=config.ws_max_sockets_per_user,
        observer=metrics,
    )
    live = providers.Singleton(
        Live,
        hub=hub,
        authenticate=authenticate,
        open_stream=open_stream,
        list_memberships=list_memberships,
        post_message=post_message,
        signal_typing=signal_typing,
        charge_resume=charge_resume,
        track_presence=track_presence,
        writes=socket_writes,
        max_frame_bytes=config.ws_max_frame_bytes,
        send_queue=config.ws_send_queue,
    )


# The use cases and services handlers are given, by the name of their parameter.
HANDLER_DEPENDENCIES = (
    "register_user", "log_in", "refresh_tokens", "log_out", "get_user", "search_users",
    "start_conversation", "list_inbox", "get_conversation", "update_conversation", "add_member",
    "join_conversation", "remove_member", "change_role", "discover_public", "mark_read",
    "post_message", "list_messages", "edit_message", "delete_message", "who_is_online",
    "check_readiness", "live",
)  # fmt: skip


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(
        {
            "storage": settings.storage,
            "database_url": settings.database_url,
            "migrate": settings.migrate,
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
            "auth_rate_per_minute": settings.auth_rate_per_minute,
            "http_rate_per_minute": settings.http_rate_per_minute,
            "sqlite_busy_timeout_ms": settings.sqlite_busy_timeout_ms,
            "sqlite_synchronous": settings.sqlite_synchronous,
            "resync_limit": settings.resync_limit,
            "accelerate": settings.accelerate,
            "ws_max_frame_bytes": settings.ws_max_frame_bytes,
            "ws_send_queue": settings.ws_send_queue,
            "ws_max_sockets_per_user": settings.ws_max_sockets_per_user,
        }
    )
    return container


def observe(container: Container) -> None:
    """The metrics hear every event published and time every statement run."""
    metrics = container.metrics()
    container.broadcaster().add_listener(metrics.published)
    container.uow().time_statements(metrics.db_statement_seconds.observe)


class MigrationFailed(Exception):
    """The database could not be upgraded (unreachable, or a schema this version cannot adopt)."""


async def migrate_database(url: str) -> tuple[str | None, str | None]:
    """``convocore migrate``: bring the database at ``url`` to this version's schema; returns the
    revisions before and after (None: empty)."""
    storage = open_storage(url)
    try:
        before = await migrate.upgrade(storage)
        return before, await migrate.current(storage)
    except (migrate.SchemaError, SQLAlchemyError, OSError, DomainError) as error:
        raise MigrationFailed(str(error)) from error
    finally:
        await storage.dispose()
