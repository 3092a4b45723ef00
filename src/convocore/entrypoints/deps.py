"""Dependencies shared by the handlers: the container and the caller's identity."""

from typing import Annotated, Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter, SkipValidation

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


def bearer_in(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header's value; "" for anything else."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    token = bearer_in(connection.headers.get("authorization", ""))
    if not token:
        raise Unauthenticated("send Authorization: Bearer <access token>")
    return token


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, so the token is checked before anything else about the request: a caller
    without a valid token gets 401 whatever the body or the query. OPTIONS, which only lists
    the methods, needs none (the router's guards reach its automatic handler too)."""
    if connection.scope.get("method") == "OPTIONS":
        return
    container: Container = connection.app.state.container
    connection.state.principal = await container.authenticate().execute(access_token=bearer_token(connection))


def provide_principal(request: ASGIConnection[Any, Any, Any, Any], container: Services) -> Principal:
    """``container`` is declared (not used) so that Litestar resolves it first and this one after:
    two independent dependencies are resolved concurrently, in an anyio task group per request,
    which cost more than both (about 4% of a REST send)."""
    principal: Principal = request.state.principal
    return principal
