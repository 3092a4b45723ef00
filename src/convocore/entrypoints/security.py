"""HTTP rate limits (Litestar's own middleware, on a Redis store when there is Redis) and the
security headers every response carries."""

import hashlib
from datetime import timedelta
from typing import Any

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Message, Scope
from redis.exceptions import RedisError

from convocore.entrypoints.settings import Settings

# Creating accounts and tokens is what brute force and spam go for: budgeted per client IP.
AUTH_PATHS = frozenset({"/api/register", "/api/login", "/api/token/refresh"})

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def _is_auth_request(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.rstrip("/") in AUTH_PATHS


def _bearer_of(request: Request[Any, Any, Any]) -> str:
    """Per access token, hashed: the middleware keys its store with this."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _has_bearer(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("authorization", "").lower().startswith("bearer ") and not _is_auth_request(request)


class ResilientStore(Store):
    """A Redis store that counts in memory while Redis is away: limits go on per process, and
    no request fails because the counter is unreachable."""

    def __init__(self, redis: RedisStore) -> None:
        self._redis, self._memory = redis, MemoryStore()

    async def _try(self, name: str, *args: Any) -> Any:
        try:
            return await getattr(self._redis, name)(*args)
        except (RedisError, OSError, TimeoutError):
            return await getattr(self._memory, name)(*args)

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await self._try("set", key, value, expires_in)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        value: bytes | None = await self._try("get", key, renew_for)
        return value

    async def delete(self, key: str) -> None:
        await self._try("delete", key)

    async def delete_all(self) -> None:
        await self._try("delete_all")

    async def exists(self, key: str) -> bool:
        return bool(await self._try("exists", key))

    async def expires_in(self, key: str) -> int | None:
        value: int | None = await self._try("expires_in", key)
        return value


def rate_limits(settings: Settings) -> tuple[list[DefineMiddleware], dict[str, Store]]:
    """The two HTTP budgets and the stores they count in."""
    by_ip = RateLimitConfig(
        rate_limit=("minute", settings.auth_rate_per_minute),
        identifier_for_request=get_remote_address,
        check_throttle_handler=_is_auth_request,
        store="rate_limit_auth",
    )
    by_token = RateLimitConfig(
        rate_limit=("minute", settings.http_rate_per_minute),
        identifier_for_request=_bearer_of,
        check_throttle_handler=_has_bearer,
        store="rate_limit_token",
    )
    stores: dict[str, Store] = {}
    for name in ("rate_limit_auth", "rate_limit_token"):
        if settings.redis_url:
            redis = RedisStore.with_client(url=settings.redis_url, namespace=f"{settings.redis_prefix}:{name}")
            stores[name] = ResilientStore(redis)
        else:
            stores[name] = MemoryStore()
    return [by_ip.middleware, by_token.middleware], stores


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
