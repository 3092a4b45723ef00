"""The one map from errors to RFC 9457 problem details, shared by HTTP and WebSocket."""

import logging
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from convocore.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from convocore.wire.schemas import FieldErrorOut, ProblemOut

log = logging.getLogger("convocore")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:convocore:problem:"


@dataclass(frozen=True, slots=True)
class Kind:
    status: int
    slug: str
    title: str


KINDS: dict[type[DomainError], Kind] = {
    Invalid: Kind(422, "validation-error", "The request is not valid"),
    Unauthenticated: Kind(401, "unauthenticated", "Authentication required"),
    Forbidden: Kind(403, "forbidden", "Not allowed"),
    NotFound: Kind(404, "not-found", "Not found"),
    Conflict: Kind(409, "conflict", "Conflict with the current state"),
    Unavailable: Kind(503, "unavailable", "Service temporarily unavailable"),
    RateLimited: Kind(429, "rate-limited", "Too many requests"),
}
HTTP_KINDS: dict[int, Kind] = {
    400: Kind(400, "bad-request", "The request could not be read"),
    401: KINDS[Unauthenticated],
    403: KINDS[Forbidden],
    404: KINDS[NotFound],
    405: Kind(405, "method-not-allowed", "Method not allowed"),
    413: Kind(413, "request-too-large", "The request body is too large"),
    415: Kind(415, "unsupported-media-type", "Unsupported media type"),
    429: KINDS[RateLimited],
    500: Kind(500, "internal-error", "Internal server error"),
}


def kind_of(error: DomainError) -> Kind:
    for cls in type(error).__mro__:
        if cls in KINDS:
            return KINDS[cls]
    return HTTP_KINDS[500]


def problem(
    kind: Kind, detail: str, *, field: str | None = None, errors: list[FieldErrorOut] | None = None
) -> ProblemOut:
    return ProblemOut(
        type=TYPE_PREFIX + kind.slug,
        title=kind.title,
        status=kind.status,
        detail=detail,
        field=msgspec.UNSET if field is None else field,
        errors=msgspec.UNSET if errors is None else errors,
    )


def _response(body: ProblemOut, headers: dict[str, str] | None = None) -> Response[ProblemOut]:
    return Response(body, status_code=body.status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem(exc: DomainError) -> tuple[ProblemOut, dict[str, str]]:
    """A domain error's problem details and the headers that go with them."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, Unavailable | RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    errors = [FieldErrorOut(field=exc.field, message=exc.detail)] if exc.field else None
    return problem(kind_of(exc), exc.detail, field=exc.field, errors=errors), headers


def domain_error_handler(_: Request[Any, Any, Any], exc: DomainError) -> Response[ProblemOut]:
    return _response(*domain_problem(exc))


_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")
_AT_PATH = re.compile(r"at `\$\.([A-Za-z0-9_]+)")


def field_in(message: str) -> str | None:
    """The field a msgspec error message is about: it names unknown and missing fields in
    the text, and the location of the others as '... - at `$.body`'."""
    found = _NAMED_FIELD.search(message) or _AT_PATH.search(message)
    return found.group(1) if found else None


def _field_of(item: dict[str, Any]) -> str:
    found = field_in(str(item.get("message", "")))
    if found:
        return found
    key = str(item.get("key") or "body")
    return "body" if key == "data" else key


def validation_error_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ProblemOut]:
    items = exc.extra if isinstance(exc.extra, list) else []
    if not items:  # malformed JSON and similar: the body could not be read at all
        return _response(problem(HTTP_KINDS[400], str(exc.detail)))
    errors = [FieldErrorOut(field=_field_of(item), message=str(item.get("message", ""))) for item in items]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return _response(problem(KINDS[Invalid], detail, field=errors[0].field, errors=errors))


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ProblemOut]:
    kind = HTTP_KINDS.get(exc.status_code) or Kind(exc.status_code, "http-error", str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 429 and "RateLimit-Reset" in headers:  # Litestar's limiter says when, as RateLimit-Reset
        headers["Retry-After"] = str(max(1, int(headers["RateLimit-Reset"])))
    return _response(problem(kind, str(exc.detail)), headers)


NESTED_TOO_DEEPLY = "the JSON is nested too deeply"


def recursion_error_handler(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ProblemOut]:
    """Litestar decodes a JSON body before it checks its type, and msgspec gives up on deep
    nesting with a RecursionError: the body could not be read (400), not a server fault."""
    if "deserializing" in str(exc):
        return _response(problem(HTTP_KINDS[400], NESTED_TOO_DEEPLY))
    return internal_error_handler(request, exc)


def internal_problem(method: str, path: str, exc: Exception) -> ProblemOut:
    """Logs an unexpected error, with its traceback, and gives the problem answered for it."""
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return problem(HTTP_KINDS[500], "an unexpected error occurred; it has been logged")


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemOut]:
    return Response(
        internal_problem(request.method, request.url.path, exc),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=PROBLEM_JSON,
    )


def status_of(error: Exception) -> int:
    """The status the handlers below answer ``error`` with. For the request metrics: an error
    raised by a middleware (the HTTP budgets' 429) is turned into a response outside them."""
    if isinstance(error, DomainError):
        return kind_of(error).status
    if isinstance(error, ValidationException):
        return KINDS[Invalid].status if isinstance(error.extra, list) and error.extra else 400
    if isinstance(error, HTTPException):
        return error.status_code
    if isinstance(error, RecursionError) and "deserializing" in str(error):
        return 400
    return HTTP_500_INTERNAL_SERVER_ERROR


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: domain_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    RecursionError: recursion_error_handler,
    Exception: internal_error_handler,
}

__all__ = [
    "EXCEPTION_HANDLERS",
    "NESTED_TOO_DEEPLY",
    "domain_problem",
    "field_in",
    "internal_problem",
    "kind_of",
    "problem",
    "status_of",
]
