"""Rate limits (per IP for accounts, per user for sends and typing, per token for HTTP),
security headers, CORS, and secrets that never reach logs or storage in the clear."""

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, assert_problem
from tests.support.remote import Remote, next_frame
from tests.support.server import ServerProcess


async def _client(**settings: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(memory=True, **FAST_HASHING, **settings))) as client:
        yield client


@pytest.fixture
async def defaults() -> AsyncIterator[AsyncTestClient[Any]]:
    async for client in _client():
        yield client


async def test_login_brute_force_is_cut_off_per_ip_with_retry_after(defaults: AsyncTestClient[Any]) -> None:
    await defaults.post("/api/register/", json={"username": "victim", "password": "password1"})
    statuses = []
    for i in range(25):
        r = await defaults.post("/api/login/", json={"username": "victim", "password": f"guess-{i:04d}"})
        statuses.append(r.status_code)
    assert statuses[:19] == [401] * 19  # the default budget: 20 account requests a minute per IP
    assert set(statuses[19:]) == {429}
    body = assert_problem(r, 429, slug="rate-limited")
    assert body["title"]
    assert int(r.headers["retry-after"]) >= 1
    ok = await defaults.post("/api/login/", json={"username": "victim", "password": "password1"})
    assert ok.status_code == 429  # even the right password waits: the budget is spent


async def test_each_authenticated_token_has_an_http_budget() -> None:
    async for client in _client(http_rate_per_minute=5):
        await client.post("/api/register/", json={"username": "busy", "password": "password1"})
        token = (await client.post("/api/login/", json={"username": "busy", "password": "password1"})).json()[
            "access_token"
        ]
        auth = {"Authorization": f"Bearer {token}"}
        statuses = [(await client.get("/api/users/me/", headers=auth)).status_code for _ in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        r = await client.get("/api/users/me/", headers=auth)
        assert int(r.headers["retry-after"]) >= 1


async def test_every_response_carries_security_headers(defaults: AsyncTestClient[Any]) -> None:
    for r in (
        await defaults.get("/health"),
        await defaults.get("/api/users/me/"),  # an error
        await defaults.get("/schema/openapi.json"),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_cors_is_closed_by_default_and_opens_per_origin(defaults: AsyncTestClient[Any]) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = await defaults.options("/api/messages/", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    async for client in _client(cors_origins=("https://app.example",)):
        allowed = await client.options("/api/messages/", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.options("/api/messages/", headers=preflight | {"Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


async def test_sends_over_rest_and_socket_share_one_budget_per_user(tmp_path: Path) -> None:
    env = {"CONVOCORE_SEND_LIMIT": "3", "CONVOCORE_SEND_WINDOW_S": "60"}
    server = ServerProcess("--memory", env=env, cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        a, b = await remote.account(), await remote.account()
        cid = await remote.group(a, b)
        await remote.send(a, cid, "one")
        await remote.send(a, cid, "two")
        async with remote.socket(cid, a.token) as ws:
            await ws.send(json.dumps({"type": "message.send", "body": "three", "client_id": "c3"}))
            seen = [await next_frame(ws), await next_frame(ws)]
            assert {f["type"] for f in seen} == {"ack", "message.created"}
            await ws.send(json.dumps({"type": "message.send", "body": "four", "client_id": "c4"}))
            error = await next_frame(ws)
            assert (error["type"], error["code"], error["client_id"]) == ("error", "rate-limited", "c4")
            assert error["retry_after"] >= 1
        r = await remote.http.post("/api/messages/", json={"conversation_id": cid, "body": "five"}, headers=a.auth)
        assert_problem(r, 429, slug="rate-limited")
        assert int(r.headers["retry-after"]) >= 1
        other = await remote.send(b, cid, "b has a budget of their own")
        assert other["seq"] == 4
    finally:
        await remote.close()
        server.stop()


async def test_limits_are_shared_across_processes_through_redis(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = {"CONVOCORE_SEND_LIMIT": "3", "CONVOCORE_SEND_WINDOW_S": "60", "CONVOCORE_REDIS_PREFIX": redis_prefix}
    servers = [
        ServerProcess("--database-url", postgres_database, "--redis-url", redis_url, env=env, cwd=tmp_path).start()
        for _ in range(2)
    ]
    remotes = [Remote(s.base_url, s.ws_url) for s in servers]
    try:
        a = await remotes[0].account()
        cid = await remotes[0].group(a)
        statuses = []
        for i in range(4):
            r = await remotes[i % 2].http.post(
                "/api/messages/", json={"conversation_id": cid, "body": f"m{i}"}, headers=a.auth
            )
            statuses.append(r.status_code)
        assert statuses == [201, 201, 201, 429]
    finally:
        for remote in remotes:
            await remote.close()
        for server in servers:
            server.stop()


async def test_passwords_and_tokens_never_appear_in_logs_or_storage(tmp_path: Path) -> None:
    server = ServerProcess("--log-level", "debug", cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    password = "correct horse"  # what Remote.account registers with
    try:
        a = await remote.account()
        await remote.http.post("/api/login/", json={"username": a.username, "password": "wrong password!"})
        await remote.http.get("/api/users/me/", headers=a.auth)
    finally:
        await remote.close()
        server.stop()
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "/api/login" in log  # the log is the real one, at debug level
    for secret in (password, "wrong password!", a.token, a.refresh_token):
        assert secret not in log
    database = tmp_path / "convocore.db"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = "\n".join(db.iterdump())
    for secret in (password, a.token, a.refresh_token):
        assert secret not in dump
    assert "$argon2id$" in dump


async def test_size_limits_answer_with_the_field_named(defaults: AsyncTestClient[Any]) -> None:
    await defaults.post("/api/register/", json={"username": "sizer", "password": "password1"})
    token = (await defaults.post("/api/login/", json={"username": "sizer", "password": "password1"})).json()[
        "access_token"
    ]
    auth = {"Authorization": f"Bearer {token}"}
    too_many = await defaults.post(
        "/api/conversations/",
        json={"kind": "group", "title": "crowd", "members": [f"user-{i}" for i in range(1001)]},
        headers=auth,
    )
    assert_problem(too_many, 422, field="members")
    cid = (await defaults.post("/api/conversations/", json={"kind": "group", "title": "t"}, headers=auth)).json()["id"]
    long_body = await defaults.post("/api/messages/", json={"conversation_id": cid, "body": "b" * 4001}, headers=auth)
    assert_problem(long_body, 422, field="body")
    big_page = await defaults.get(f"/api/messages/{cid}/?limit=201", headers=auth)
    assert_problem(big_page, 422, field="limit")
    huge = await defaults.post(
        "/api/messages/", content=b"{" + b" " * 70_000 + b"}", headers=auth | {"content-type": "application/json"}
    )
    assert_problem(huge, 413)
