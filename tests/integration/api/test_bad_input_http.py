"""Bad input over HTTP that the OpenAPI fuzzing does not generate, and what it found: each was
a 5xx, a wrong answer or a wrong header before it was fixed."""

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.api.conftest import Api, assert_problem

DEEP = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"


async def test_deeply_nested_json_is_a_400_not_a_500(api: Api) -> None:
    a = await api.person()
    json_type = {"content-type": "application/json"}
    r = await api.client.post("/api/register/", content=DEEP, headers=json_type)
    assert assert_problem(r, 400, slug="bad-request")["detail"] == "the JSON is nested too deeply"
    r = await api.client.post("/api/messages/", content=DEEP, headers={**a.auth, **json_type})
    assert_problem(r, 400, slug="bad-request")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/messages/", "not json"),
        ("POST", "/api/messages/", DEEP),
        ("POST", "/api/conversations/", '{"kind": "channel"}'),
        ("PATCH", "/api/conversations/c-1/", "x" * 70_000),
        ("GET", "/api/users/?limit=0", None),
        ("GET", "/api/messages/c-1/?before=-1", None),
    ],
)
async def test_the_token_is_checked_before_the_body_or_the_query(
    client: AsyncTestClient[Any], method: str, path: str, body: str | None
) -> None:
    r = await client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert assert_problem(r, 401, slug="unauthenticated")["detail"] == "send Authorization: Bearer <access token>"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/conversations/", "GET, OPTIONS, POST"),
        ("/api/conversations/c-1/", "GET, OPTIONS, PATCH"),
        ("/api/conversations/c-1/members/u-1/", "DELETE, OPTIONS, PATCH"),
        ("/api/messages/c-1/1/", "DELETE, OPTIONS, PATCH"),
        ("/api/users/me/", "GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method_of_the_path(client: AsyncTestClient[Any], path: str, allow: str) -> None:
    r = await client.options(path)
    assert r.status_code == 204
    assert r.headers["allow"] == allow


async def test_the_openapi_document_describes_the_real_errors(client: AsyncTestClient[Any]) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    send = doc["paths"]["/api/messages"]["post"]
    assert sorted(send["responses"]) == ["200", "201", "400", "401", "404", "409", "413", "415", "422", "429", "503"]
    problem = send["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/ProblemOut"}
    assert doc["components"]["schemas"]["ProblemOut"]["required"] == ["detail", "status", "title", "type"]
    assert doc["components"]["schemas"]["PostMessageIn"]["additionalProperties"] is False
