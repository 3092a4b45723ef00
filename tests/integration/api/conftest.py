"""The real Litestar app in-process (memory storage, or CONVOCORE_TEST_DATABASE's), with a small
client for the API."""

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.support.remote import Account
from tests.support.storage import storage_for

FAST_HASHING: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_cost": 1024}
GENEROUS_LIMITS: dict[str, Any] = {
    "auth_rate_per_minute": 1_000_000,
    "http_rate_per_minute": 1_000_000,
    "send_limit": 1_000_000,
}
_names = itertools.count(1)


# The same account record the real-server tests use.
Person = Account


class Api:
    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client

    async def person(self, prefix: str = "user") -> Person:
        username = f"{prefix}{next(_names)}"
        r = await self.client.post("/api/register/", json={"username": username, "password": "correct horse"})
        assert r.status_code == 201, r.text
        r = await self.client.post("/api/login/", json={"username": username, "password": "correct horse"})
        assert r.status_code == 200, r.text
        body = r.json()
        return Person(body["user"]["id"], username, body["access_token"], body["refresh_token"])

    async def group(self, owner: Person, *members: Person, title: str = "team", public: bool = False) -> str:
        r = await self.client.post(
            "/api/conversations/",
            json={"kind": "group", "title": title, "members": [m.id for m in members], "public": public},
            headers=owner.auth,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def direct(self, a: Person, b: Person) -> str:
        r = await self.client.post("/api/conversations/", json={"kind": "direct", "members": [b.id]}, headers=a.auth)
        assert r.status_code in (200, 201), r.text
        return str(r.json()["id"])

    async def send(self, who: Person, conversation_id: str, body: str, **extra: Any) -> dict[str, Any]:
        r = await self.client.post(
            "/api/messages/",
            json={"conversation_id": conversation_id, "body": body, **extra},
            headers=who.auth,
        )
        assert r.status_code in (200, 201), r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    with storage_for(default="memory", tmp=tmp_path) as storage:  # CONVOCORE_TEST_DATABASE
        app = create_app(Settings(**storage.settings, **FAST_HASHING, **GENEROUS_LIMITS))
        async with AsyncTestClient(app) as test_client:
            yield test_client


@pytest.fixture
def api(client: AsyncTestClient[Any]) -> Api:
    return Api(client)


def assert_problem(response: Any, status: int, *, slug: str | None = None, field: str | None = None) -> dict[str, Any]:
    """Every error is RFC 9457 problem details with a stable type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:convocore:problem:")
    assert body["title"]
    if slug is not None:
        assert body["type"] == f"urn:convocore:problem:{slug}", body
    if field is not None:
        assert body["field"] == field, body
    return body
