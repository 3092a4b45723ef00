"""Dependencies shared by the handlers: the container and the caller's identity."""

from typing import Annotated, Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware.base import DefineMiddleware
from litestar.params import FromPath, JSONBody, QueryParameter, SkipValidation
from litestar.types import ASGIApp, Receive, Scope, Send

from convocore.application.accounts import Principal
from convocore.domain.errors import Unauthenticated
from convocore.entrypoints.container import Container

# Explicit markers: the container and principal are ours, not data to validate.
Services = NamedDependency[SkipValidation[Container]]
Caller = NamedDependency[SkipValidation[Principal]]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size, 1 to 200.")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="Opaque cursor from the previous page.")]
Query = Annotated[str, QueryParameter(max_length=200, description="Search text.")]

__all__ = ["Caller", "Cursor", "FromPath", "JSONBody", "Limit", "Query", "Services"]


def provide_container(state: State) -> Container:
    container: Container = state.container
    return container


def header_of(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the request's header ``name`` (lower case, as ASGI gives names)."""
    return next((value for key, value in scope["headers"] if key == name), None)


def bearer_of(scope: Scope) -> str:
    """The token of the request's ``Authorization: Bearer <token>`` header; "" for anything else."""
    header = header_of(scope, b"authorization") or b""
    scheme, _, token = header.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Authenticated:
    """Middleware of the routes that need a caller: the access token is checked after routing and
    before anything else about the request, so a caller without a valid token gets 401 whatever
    the body or the query. OPTIONS, which only lists the methods, needs none. The principal goes
    into the connection's state, where ``provide_principal`` finds it.

    It was a guard, and Litestar copies the route handler (``copy.copy``) for every guard call
    (docs/performance.md, lever 22). A 401 raised here is answered by the app's exception
    handlers, outside the request metrics, which count it under its status all the same
    (``metrics.RequestMetrics``)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope  # HTTP route handlers only
        if http["method"] != "OPTIONS":
            token = bearer_of(scope)
            if not token:
                raise Unauthenticated("send Authorization: Bearer <access token>")
            container: Container = http["app"].state.container
            principal = await container.authenticate().execute(access_token=token)
            http.setdefault("state", {})["principal"] = principal
        await self._app(scope, receive, send)


AUTHENTICATED = [DefineMiddleware(Authenticated)]


def provide_principal(request: ASGIConnection[Any, Any, Any, Any], container: Services) -> Principal:
    """``container`` is declared (not used) so that Litestar resolves it first and this one after:
    two independent dependencies are resolved concurrently, in an anyio task group per request,
    which cost more than both (about 4% of a REST send)."""
    principal: Principal = request.state.principal
    return principal
