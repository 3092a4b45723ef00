"""Use cases for accounts: register, log in, refresh, log out, authenticate, find people."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from convocore.application.ports import (
    Clock,
    IdGenerator,
    PasswordHasher,
    Publisher,
    TokenGenerator,
    UnitOfWorkFactory,
)
from convocore.domain.errors import Conflict, Invalid, NotFound, Unauthenticated
from convocore.domain.events import SessionRevoked
from convocore.domain.text import storable
from convocore.domain.users import (
    AuthSession,
    User,
    validate_display_name,
    validate_password,
    validate_username,
)

# Verifying against this when the user is unknown keeps both failures equally slow.
_UNKNOWN_USER_PASSWORD = "convocore-timing-equaliser"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPolicy:
    access_ttl_s: int = 3600
    refresh_ttl_s: int = 30 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


class RegisterUser:
    def __init__(self, *, uow: UnitOfWorkFactory, hasher: PasswordHasher, ids: IdGenerator, clock: Clock) -> None:
        self._uow, self._hasher, self._ids, self._clock = uow, hasher, ids, clock

    async def execute(self, *, username: str, password: str, display_name: str | None = None) -> User:
        validate_username(username)
        validate_password(password)
        name = validate_display_name(display_name, username=username)
        async with self._uow() as uow:
            if await uow.users.get_by_username(username) is not None:
                raise Conflict("that username is taken", field="username")
        password_hash = await self._hasher.hash(password)
        user = User(
            id=self._ids.new_id(),
            username=username,
            display_name=name,
            password_hash=password_hash,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        return user


class LogIn:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        ids: IdGenerator,
        tokens: TokenGenerator,
        clock: Clock,
        policy: TokenPolicy,
    ) -> None:
        self._uow, self._hasher, self._ids = uow, hasher, ids
        self._tokens, self._clock, self._policy = tokens, clock, policy
        self._dummy_hash: str | None = None

    async def execute(self, *, username: str, password: str) -> IssuedTokens:
        storable(username, field="username")
        storable(password, field="password")
        async with self._uow() as uow:
            user = await uow.users.get_by_username(username)
        if user is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hasher.hash(_UNKNOWN_USER_PASSWORD)
            await self._hasher.verify(self._dummy_hash, password)
            raise Unauthenticated("wrong username or password")
        if not await self._hasher.verify(user.password_hash, password):
            raise Unauthenticated("wrong username or password")
        access, refresh = self._tokens.new_token(), self._tokens.new_token()
        now = self._clock.now()
        session = AuthSession(
            id=self._ids.new_id(),
            user_id=user.id,
            access_hash=self._tokens.digest(access),
            access_expires_at=now + timedelta(seconds=self._policy.access_ttl_s),
            refresh_hash=self._tokens.digest(refresh),
            refresh_expires_at=now + timedelta(seconds=self._policy.refresh_ttl_s),
            created_at=now,
        )
        async with self._uow() as uow:
            await uow.sessions.add(session)
            await uow.commit()
        return IssuedTokens(access_token=access, refresh_token=refresh, expires_in=self._policy.access_ttl_s, user=user)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling, as established from a bearer token."""

    user_id: str
    session_id: str
    expires_at: datetime


class PrincipalCache:
    """Tokens this process accepted in the last ``ttl_s`` seconds, so that a request does not
    read its session row again (a read per request is a large share of a small request).

    Logging out and refreshing in this process forget the session at once. A session ended
    through *another* process is forgotten here when the entry runs out: for at most ``ttl_s``
    seconds this process still accepts the old access token over HTTP (its sockets are closed
    at once either way, by the SessionRevoked event). ``ttl_s=0`` turns the cache off.
    """

    def __init__(
        self, *, ttl_s: float, max_entries: int = 100_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s, self._max, self._monotonic = ttl_s, max_entries, monotonic
        self._by_digest: dict[str, tuple[Principal, float]] = {}
        self._digest_of_session: dict[str, str] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._by_digest.get(digest)
        if entry is None:
            return None
        if self._monotonic() >= entry[1]:
            self._drop(digest, entry[0].session_id)
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        if self._ttl_s <= 0:
            return
        now = self._monotonic()
        if len(self._by_digest) >= self._max:
            for old, (who, until) in list(self._by_digest.items()):
                if now >= until:
                    self._drop(old, who.session_id)
            if len(self._by_digest) >= self._max:
                self._by_digest.clear()
                self._digest_of_session.clear()
        self.forget_session(principal.session_id)
        self._by_digest[digest] = (principal, now + self._ttl_s)
        self._digest_of_session[principal.session_id] = digest

    def forget_session(self, session_id: str) -> None:
        digest = self._digest_of_session.pop(session_id, None)
        if digest is not None:
            self._by_digest.pop(digest, None)

    def _drop(self, digest: str, session_id: str) -> None:
        self._by_digest.pop(digest, None)
        if self._digest_of_session.get(session_id) == digest:
            del self._digest_of_session[session_id]


class RefreshTokens:
    """Rotate the pair: the old refresh token stops working the moment a new pair is issued, and
    only one of two refreshes with one token succeeds. A rotated token presented again means it
    leaked (its holder and a thief both have it): the whole session is revoked (RFC 9700 4.14.2)."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        tokens: TokenGenerator,
        clock: Clock,
        policy: TokenPolicy,
        cache: PrincipalCache | None = None,
        broadcaster: Publisher | None = None,
    ) -> None:
        self._uow, self._tokens, self._clock, self._policy, self._cache = uow, tokens, clock, policy, cache
        self._broadcaster = broadcaster  # a session revoked on reuse ends its sockets

    async def execute(self, *, refresh_token: str) -> IssuedTokens:
        access, refresh = self._tokens.new_token(), self._tokens.new_token()
        presented, now = self._tokens.digest(refresh_token), self._clock.now()
        async with self._uow() as uow:
            session = await uow.sessions.get_by_refresh_hash(presented, for_update=True)
            if session is None:
                user = None
            else:
                session.rotate(
                    access_hash=self._tokens.digest(access),
                    refresh_hash=self._tokens.digest(refresh),
                    access_ttl_s=self._policy.access_ttl_s,
                    refresh_ttl_s=self._policy.refresh_ttl_s,
                    now=now,
                )
                user = await uow.users.get(session.user_id)
                if user is None:
                    raise Unauthenticated("the account is gone")
                await uow.sessions.retire_refresh_hash(presented, session_id=session.id, retired_at=now)
                await uow.sessions.save(session)
                await uow.commit()
        if session is None or user is None:
            await self._refused(presented, now)
        if self._cache is not None:
            self._cache.forget_session(session.id)  # the old access token stops working
        return IssuedTokens(access_token=access, refresh_token=refresh, expires_in=self._policy.access_ttl_s, user=user)

    async def _refused(self, presented: str, now: datetime) -> NoReturn:
        """A token that is not any session's current one. If a session rotated it away, it
        leaked: that session is revoked (unless it is over already)."""
        async with self._uow() as uow:
            owner = await uow.sessions.get_by_retired_refresh_hash(presented)
            session = await uow.sessions.get(owner.id, for_update=True) if owner is not None else None
            if session is None or session.revoked_at is not None:
                raise Unauthenticated("the refresh token is unknown, used or revoked")
            session.revoke(now=now)
            await uow.sessions.save(session)
            await uow.commit()
        await self._ended(session)
        raise Unauthenticated("the refresh token was used before: the session is revoked")

    async def _ended(self, session: AuthSession) -> None:
        if self._cache is not None:
            self._cache.forget_session(session.id)
        if self._broadcaster is not None:
            await self._broadcaster.publish(SessionRevoked(user_id=session.user_id, session_id=session.id))


class Authenticate:
    def __init__(
        self, *, uow: UnitOfWorkFactory, tokens: TokenGenerator, clock: Clock, cache: PrincipalCache | None = None
    ) -> None:
        self._uow, self._tokens, self._clock, self._cache = uow, tokens, clock, cache

    async def execute(self, *, access_token: str) -> Principal:
        if not access_token:
            raise Unauthenticated("a bearer token is required")
        digest = self._tokens.digest(access_token)
        if self._cache is not None and (known := self._cache.get(digest)) is not None:
            if self._clock.now() < known.expires_at:
                return known
            self._cache.forget_session(known.session_id)
        async with self._uow() as uow:
            session = await uow.sessions.get_by_access_hash(digest)
        if session is None:
            raise Unauthenticated("the access token is unknown")
        session.check_access(now=self._clock.now())
        principal = Principal(user_id=session.user_id, session_id=session.id, expires_at=session.access_expires_at)
        if self._cache is not None:
            self._cache.put(digest, principal)
        return principal


class LogOut:
    def __init__(
        self, *, uow: UnitOfWorkFactory, clock: Clock, broadcaster: Publisher, cache: PrincipalCache | None = None
    ) -> None:
        self._uow, self._clock, self._broadcaster, self._cache = uow, clock, broadcaster, cache

    async def execute(self, *, principal: Principal) -> None:
        async with self._uow() as uow:
            session = await uow.sessions.get(principal.session_id, for_update=True)
            if session is None:
                raise Unauthenticated("the session is unknown")
            session.revoke(now=self._clock.now())
            await uow.sessions.save(session)
            await uow.commit()
        if self._cache is not None:
            self._cache.forget_session(session.id)
        await self._broadcaster.publish(SessionRevoked(user_id=session.user_id, session_id=session.id))


class GetUser:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, user_id: str) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("no such user")
        return user


class SearchUsers:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, prefix: str, after: str | None, limit: int) -> tuple[list[User], str | None]:
        """A page of users and the cursor (a username key) for the next one, if any."""
        if not 1 <= limit <= 200:
            raise Invalid("1 to 200", field="limit")
        if len(prefix) > 32:
            raise Invalid("at most 32 characters", field="q")
        storable(prefix, field="q")
        async with self._uow() as uow:
            found = await uow.users.search(prefix=prefix, after=after, limit=limit + 1)
        page = found[:limit]
        return page, (page[-1].username_key if len(found) > limit else None)
