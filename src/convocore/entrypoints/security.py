"""HTTP rate limits (on the same limiter as message sends, so on Redis when there is Redis) and
the security headers every response carries."""

import hashlib
from typing import Any

from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from convocore.application.messages import Budget, spend
from convocore.application.ports import RateLimiter
from convocore.entrypoints.deps import bearer_of

# Creating accounts and tokens is what brute force and spam go for: budgeted per client IP.
AUTH_PATHS = frozenset({"/api/register", "/api/login", "/api/token/refresh"})
# What a load balancer or a monitor polls: never budgeted, or a throttled caller would take the
# process out of rotation.
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})

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
    Charged once per request, by ``HttpBudgetsMiddleware``. (Litestar's own rate-limit middleware
    ran a sync hook through a thread per request and re-encoded each key's history as JSON.) Over
    the limit, ``RateLimited`` becomes 429 with Retry-After like every other domain error.
    """

    def __init__(self, limiter: RateLimiter, *, auth: Budget, token: Budget) -> None:
        self._limiter, self._auth, self._token = limiter, auth, token

    async def charge(self, scope: Scope) -> None:
        """Spends the request's budget; ``RateLimited`` when it is spent out."""
        path = scope["path"].rstrip("/")
        if path in UNLIMITED_PATHS:
            return
        if path in AUTH_PATHS:
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


_SECURITY_RAW = [(name.encode(), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()]


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Each security header the response does not set itself, added to ASGI's raw header list
    (a headers object per response, searched once per header, costs more than the rest of it)."""
    if message["type"] == "http.response.start":
        headers: Any = message.setdefault("headers", [])
        present = {name.lower() for name, _ in headers}
        headers.extend(header for header in _SECURITY_RAW if header[0] not in present)
