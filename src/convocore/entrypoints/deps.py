"""What handlers are given: the use cases they call (by parameter name, from the composition
root) and the caller's identity, checked by ``Authenticated`` before anything else."""

import re
from typing import Annotated, Any, TypeAlias, TypeVar

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.middleware.base import DefineMiddleware
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter, SkipValidation
from litestar.types import ASGIApp, Receive, Scope, Send

from convocore.application.accounts import Authenticate, Principal
from convocore.domain.errors import Unauthenticated
from convocore.wire.schemas import ID_PATTERN, SEQ_MAX

T = TypeVar("T")
# A use case (or another service) injected by name: ours to trust, not data to validate.
Use: TypeAlias = NamedDependency[SkipValidation[T]]
# A request whose caller ``Authenticated`` established: ``request.user``.
Caller: TypeAlias = Request[Principal, Any, Any]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size, 1 to 200.")]
# Ids and seqs in paths: what an id or a seq can be (no control characters; 64-bit), 422 otherwise.
PathId = Annotated[str, PathParameter(min_length=1, max_length=64, pattern=ID_PATTERN)]
PathSeq = Annotated[int, PathParameter(ge=1, le=SEQ_MAX, description="A message's seq.")]
SeqBound = Annotated[int | None, QueryParameter(ge=0, le=SEQ_MAX, description="Exclusive seq bound.")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="Opaque cursor from the previous page.")]
Query = Annotated[str, QueryParameter(max_length=200, description="Search text.")]

__all__ = [
    "Caller",
    "Cursor",
    "FromPath",
    "JSONBody",
    "Limit",
    "PathId",
    "PathSeq",
    "Query",
    "SeqBound",
    "Use",
    "provide",
]

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


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON = re.compile(rb"application/(?:[\w.+-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


class JsonBodiesOnly:
    """Every request body is JSON and says so: a cross-site HTML form, which can send only form
    or text bodies without a preflight, never reaches a handler (415). After ``Authenticated``
    on the routes that need a caller, so the token is still checked first."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope  # HTTP route handlers only
        if http["method"] in _BODY_METHODS and _has_body(scope):
            kind = header_of(scope, b"content-type") or b""
            if not _JSON.match(kind):
                raise HTTPException(status_code=415, detail="send the request body as application/json")
        await self._app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    length = header_of(scope, b"content-length")
    return (length is not None and length.strip() not in (b"", b"0")) or header_of(
        scope, b"transfer-encoding"
    ) is not None


# Route middleware: of the routes that need a caller, and of those anyone may call with a body.
AUTHENTICATED = [DefineMiddleware(Authenticated), DefineMiddleware(JsonBodiesOnly)]
ANYONE = [DefineMiddleware(JsonBodiesOnly)]
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
