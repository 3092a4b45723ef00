"""The one composition root: which adapter runs is decided here and nowhere else."""

from dependency_injector import containers, providers

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import (
    InProcessBroadcaster,
    MemoryPresenceStore,
    MemoryRateLimiter,
    MemoryUnitOfWorkFactory,
)
from convocore.adapters.redis_broadcaster import RedisBroadcaster, RedisPresenceStore, RedisRateLimiter
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, create_engine
from convocore.adapters.system import SecretTokenGenerator, SystemClock, UuidGenerator
from convocore.application import accounts, conversations, messages, operations, realtime
from convocore.entrypoints import frames


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
    engine = providers.Singleton(
        create_engine, url=config.database_url, sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms
    )
    uow = providers.Selector(
        config.storage,
        memory=providers.Singleton(MemoryUnitOfWorkFactory),
        sql=providers.Singleton(SqlAlchemyUnitOfWorkFactory, engine=engine),
    )
    broadcaster = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(InProcessBroadcaster),
        redis=providers.Singleton(
            RedisBroadcaster, url=config.redis_url, encode=frames.wire_encode, prefix=config.redis_prefix
        ),
    )
    limiter = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(MemoryRateLimiter),
        redis=providers.Singleton(RedisRateLimiter, url=config.redis_url, prefix=config.redis_prefix),
    )
    presence = providers.Selector(
        config.broadcaster,
        memory=providers.Singleton(MemoryPresenceStore),
        redis=providers.Singleton(
            RedisPresenceStore, url=config.redis_url, ttl_s=config.presence_ttl_s, prefix=config.redis_presence_prefix
        ),
    )

    register_user = providers.Singleton(accounts.RegisterUser, uow=uow, hasher=hasher, ids=ids, clock=clock)
    log_in = providers.Singleton(
        accounts.LogIn, uow=uow, hasher=hasher, ids=ids, tokens=tokens, clock=clock, policy=token_policy
    )
    principals = providers.Singleton(accounts.PrincipalCache, ttl_s=config.auth_cache_s)
    refresh_tokens = providers.Singleton(
        accounts.RefreshTokens, uow=uow, tokens=tokens, clock=clock, policy=token_policy, cache=principals
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
