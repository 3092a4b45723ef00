"""Every operation of the OpenAPI document, fed what an attacker or a careless client sends:
numbers past their declared range, NUL and other control characters in every string it takes
(path, query, body), and bodies that do not say they are JSON. On SQLite and on PostgreSQL (whose
text cannot hold NUL): each is a 4xx problem, never a 5xx. (The schema-driven fuzzing, valid and
invalid, is test_openapi_fuzz.py.)"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS, Api
from tests.support.storage import sql_database

SEQ_MAX = 2**63 - 1
NASTY_TEXT = ["a\x00b", "\x00", "tab\there", "bell\x07", "del\x7f", "\x1b[31m"]
NASTY_NUMBERS = [SEQ_MAX + 1, 2**64, -(2**63) - 1, -1]


@dataclass
class World:
    api: Api
    document: dict[str, Any]
    ids: dict[str, str]  # a real value for each path parameter name

    def path(self, template: str, **override: str) -> str:
        values = {**self.ids, **override}
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    with sql_database(request.param, tmp_path) as url:
        app = create_app(Settings(database_url=url, migrate=True, **FAST_HASHING, **GENEROUS_LIMITS))
        async with AsyncTestClient(app) as client:
            api = Api(client)
            owner, other = await api.person(), await api.person()
            cid = await api.group(owner, other)
            await api.send(owner, cid, "hello")
            client.headers.update(owner.auth)
            document = (await client.get("/schema/openapi.json")).json()
            yield World(api, document, {"conversation_id": cid, "user_id": other.id, "seq": "1"})


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                yield template, method, operation


def _assert_refused(response: Any, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text}"
    if response.status_code not in (404, 405):
        assert response.headers["content-type"].startswith("application/problem+json"), what


async def test_control_characters_in_every_path_and_query_parameter(world: World) -> None:
    client = world.api.client
    for template, method, operation in _operations(world.document):
        if template.startswith("/api/logout"):
            continue
        for parameter in operation.get("parameters", []):
            kind = parameter["schema"].get("type") or parameter["schema"].get("oneOf", [{}])[0].get("type")
            for text in NASTY_TEXT if kind == "string" else []:
                if parameter["in"] == "path":
                    url, params = world.path(template, **{parameter["name"]: quote(text, safe="")}), {}
                elif parameter["in"] == "query":
                    url, params = world.path(template), {parameter["name"]: text}
                else:
                    continue
                response = await client.request(method, url + "/", params=params, json={} if method != "get" else None)
                if response.status_code < 400:  # a tab in a search text is only text
                    assert "\x00" not in text, f"{method} {template} {parameter['name']}={text!r}"
                else:
                    _assert_refused(response, f"{method} {template} {parameter['name']}={text!r}")


async def test_out_of_range_numbers_in_every_integer_parameter(world: World) -> None:
    client = world.api.client
    for template, method, operation in _operations(world.document):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            types = {schema.get("type")} | {one.get("type") for one in schema.get("oneOf", [])}
            if "integer" not in types:
                continue
            for number in NASTY_NUMBERS:
                if parameter["in"] == "path":
                    url, params = world.path(template, **{parameter["name"]: str(number)}), {}
                else:
                    url, params = world.path(template), {parameter["name"]: str(number)}
                response = await client.request(method, url + "/", params=params, json={} if method != "get" else None)
                _assert_refused(response, f"{method} {template} {parameter['name']}={number}")


def _strings_and_numbers(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, str]:
    """A request body schema's top-level fields and their types (after one $ref)."""
    ref = schema.get("$ref")
    if ref:
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return {name: (prop.get("type") or "") for name, prop in schema.get("properties", {}).items()}


async def test_nasty_values_in_every_body_field(world: World) -> None:
    client = world.api.client
    valid = {"conversation_id": world.ids["conversation_id"], "body": "hi", "kind": "group", "title": "t"}
    for template, method, operation in _operations(world.document):
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None or template.startswith("/api/logout"):
            continue
        fields = _strings_and_numbers(content["schema"], world.document)
        for name, kind in fields.items():
            values: list[Any] = NASTY_TEXT if kind == "string" else NASTY_NUMBERS if kind == "integer" else []
            for value in values:
                body = {key: valid[key] for key in fields if key in valid} | {name: value}
                response = await client.request(method, world.path(template) + "/", json=body)
                what = f"{method} {template} {name}={value!r}"
                if response.status_code >= 400:
                    _assert_refused(response, what)
                else:  # some control characters are text (a tab in a body); NUL never is
                    assert isinstance(value, str) and "\x00" not in value, what


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_every_body_that_is_not_declared_json_is_415(world: World, content_type: str) -> None:
    client = world.api.client
    for template, method, operation in _operations(world.document):
        if "requestBody" not in operation:
            continue
        response = await client.request(
            method, world.path(template) + "/", content=b'{"a": 1}', headers={"content-type": content_type}
        )
        assert response.status_code == 415, f"{method} {template}: {response.status_code}"
