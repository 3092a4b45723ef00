"""HTTP rate limits (on the same limiter as message sends, so on Redis when there is Redis) and
the security headers every response carries."""

import hashlib

from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from convocore.application.messages import Budget, spend
from convocore.application.ports import RateLimiter
from convocore.entrypoints.deps import bearer_of
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


class HttpBudgets:
    """The two HTTP budgets, counted by the same ``RateLimiter`` as message sends (in memory, or
    in Redis across processes, per process while Redis is away): per client IP for the paths
    that create accounts and tokens, per access token for every other request that carries one.
    Charged once per request: by ``HttpBudgetsMiddleware`` for the routes Litestar serves, by
    ``hot.HotRoutes`` for the ones it answers itself.

    Litestar's own rate-limit middleware did this before. It ran its sync "should this request
    count" hook through a thread for every request, and kept each key's history as a JSON list of
    timestamps that it decoded and re-encoded per request (up to 1,200 entries): about a tenth of
    a REST send's CPU. Over the limit, ``RateLimited`` becomes 429 with Retry-After like every
    other domain error.
    """

    def __init__(self, limiter: RateLimiter, *, auth: Budget, token: Budget) -> None:
        self._limiter, self._auth, self._token = limiter, auth, token

    @classmethod
    def of(cls, settings: Settings, limiter: RateLimiter) -> "HttpBudgets":
        return cls(
            limiter,
            auth=Budget(limit=settings.auth_rate_per_minute, window_s=60),
            token=Budget(limit=settings.http_rate_per_minute, window_s=60),
        )

    async def charge(self, scope: Scope) -> None:
        """Spends the request's budget; ``RateLimited`` when it is spent out."""
        if scope["path"].rstrip("/") in AUTH_PATHS:
            client = scope.get("client")
            await spend(self._limiter, self._auth, f"http-ip:{client[0] if client else '-'}", "requests")
        elif token := bearer_of(scope):
            digest = hashlib.sha256(token.encode()).hexdigest()[:32]
            await spend(self._limiter, self._token, f"http-token:{digest}", "requests")


class HttpBudgetsMiddleware:
    def __init__(self, app: ASGIApp, *, budgets: HttpBudgets) -> None:
        self._app, self._charge = app, budgets.charge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP only: app.py mounts it through HttpOnly, so sockets never come here.
        await self._charge(scope)
        await self._app(scope, receive, send)


def http_budgets(budgets: HttpBudgets) -> DefineMiddleware:
    return DefineMiddleware(HttpBudgetsMiddleware, budgets=budgets)


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
