"""What handlers are given: the use cases they call (by parameter name, from the composition
root) and the caller's identity, checked by ``Authenticated`` before anything else."""

from typing import Annotated, Any, TypeAlias, TypeVar

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.middleware.base import DefineMiddleware
from litestar.params import FromPath, JSONBody, QueryParameter, SkipValidation
from litestar.types import ASGIApp, Receive, Scope, Send

from convocore.application.accounts import Authenticate, Principal
from convocore.domain.errors import Unauthenticated

T = TypeVar("T")
# A use case (or another service) injected by name: ours to trust, not data to validate.
Use: TypeAlias = NamedDependency[SkipValidation[T]]
# A request whose caller ``Authenticated`` established: ``request.user``.
Caller: TypeAlias = Request[Principal, Any, Any]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size, 1 to 200.")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="Opaque cursor from the previous page.")]
Query = Annotated[str, QueryParameter(max_length=200, description="Search text.")]

__all__ = ["Caller", "Cursor", "FromPath", "JSONBody", "Limit", "Query", "Use", "provide"]

AUTHENTICATE = "authenticate"  # the app state's Authenticate use case, which the middleware calls


def provide(value: Any) -> Provide:
    """A dependency that is always ``value`` (a use case the container built once)."""

    def provider() -> Any:
        return value

    return Provide(provider, use_cache=True, sync_to_thread=False)


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
    the body or the query. OPTIONS, which only lists the methods, needs none. The principal is
    the request's ``user``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope  # HTTP route handlers only
        if http["method"] != "OPTIONS":
            token = bearer_of(scope)
            if not token:
                raise Unauthenticated("send Authorization: Bearer <access token>")
            authenticate: Authenticate = getattr(http["app"].state, AUTHENTICATE)
            http["user"] = await authenticate.execute(access_token=token)
        await self._app(scope, receive, send)


AUTHENTICATED = [DefineMiddleware(Authenticated)]
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
