"""Endpoints for whoever runs the service: liveness is ``/health`` (app.py), readiness is here."""

import msgspec
from litestar import Response, get
from litestar.openapi import ResponseSpec

from convocore.application.operations import CheckReadiness
from convocore.entrypoints.deps import Use
from convocore.entrypoints.errors import PROBLEM_JSON, TYPE_PREFIX


class ReadyOut(msgspec.Struct, kw_only=True):
    status: str  # "ready"
    checks: dict[str, str]  # dependency -> "ok"


class NotReadyOut(msgspec.Struct, kw_only=True):
    """Problem details (urn:convocore:problem:not-ready) with every check's outcome."""

    type: str
    title: str
    status: int
    detail: str
    checks: dict[str, str]  # dependency -> "ok", or why not


NOT_READY = {
    503: ResponseSpec(data_container=NotReadyOut, description="A dependency does not answer", media_type=PROBLEM_JSON)
}


@get(
    "/ready",
    tags=["operations"],
    summary="The database (and Redis, when configured) answer",
    responses=NOT_READY,
)
async def ready(check_readiness: Use[CheckReadiness]) -> Response[ReadyOut | NotReadyOut]:
    readiness = await check_readiness.execute()
    if readiness.ready:
        return Response(ReadyOut(status="ready", checks=readiness.checks))
    detail = "; ".join(f"{name}: {why}" for name, why in readiness.failing.items())
    body = NotReadyOut(
        type=f"{TYPE_PREFIX}not-ready", title="Not ready", status=503, detail=detail, checks=readiness.checks
    )
    return Response(body, status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": "5"})
