"""What an outside review found over HTTP, on SQLite and on PostgreSQL: numbers out of range and
NUL characters are 422s naming the field (never 500), health is never rate limited, request
bodies must say they are JSON, and a refresh token works once: a second refresh with it fails,
and a rotated one presented again revokes its session."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS, Api, Person, assert_problem
from tests.support.storage import sql_database

SEQ_MAX = 2**63 - 1


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    with sql_database(request.param, tmp_path) as url:
        app = create_app(Settings(database_url=url, migrate=True, **FAST_HASHING, **GENEROUS_LIMITS))
        async with AsyncTestClient(app) as client:
            yield Api(client)


async def _conversation_with_a_message(api: Api) -> tuple[Person, str]:
    owner = await api.person()
    cid = await api.group(owner)
    await api.send(owner, cid, "hello")
    return owner, cid


@pytest.mark.parametrize("seq", [str(SEQ_MAX + 1), str(2**65), "36893488147419103231", "0"])
async def test_a_seq_out_of_range_in_a_path_is_422(api: Api, seq: str) -> None:
    owner, cid = await _conversation_with_a_message(api)
    url = f"/api/messages/{cid}/{seq}/"
    assert_problem(await api.client.delete(url, headers=owner.auth), 422, field="seq")
    assert_problem(await api.client.patch(url, json={"body": "x"}, headers=owner.auth), 422, field="seq")


async def test_the_largest_seq_is_a_number_like_any_other(api: Api) -> None:
    owner, cid = await _conversation_with_a_message(api)
    assert_problem(await api.client.delete(f"/api/messages/{cid}/{SEQ_MAX}/", headers=owner.auth), 404)
    for bound in (2**31, 2**32 + 5, SEQ_MAX):  # past 32 bits: the columns are 64-bit
        page = await api.client.get(f"/api/messages/{cid}/", params={"before": bound}, headers=owner.auth)
        assert page.status_code == 200 and [m["seq"] for m in page.json()["items"]] == [1]
        after = await api.client.get(f"/api/messages/{cid}/", params={"after": bound}, headers=owner.auth)
        assert after.status_code == 200 and after.json()["items"] == []
    read = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": SEQ_MAX}, headers=owner.auth)
    assert read.status_code == 200 and read.json()["last_read_seq"] == 1  # never past the end


@pytest.mark.parametrize("name", ["before", "after"])
@pytest.mark.parametrize("value", [str(SEQ_MAX + 1), str(-(2**63) - 1), "-1"])
async def test_a_history_bound_out_of_range_is_422(api: Api, name: str, value: str) -> None:
    owner, cid = await _conversation_with_a_message(api)
    r = await api.client.get(f"/api/messages/{cid}/", params={name: value}, headers=owner.auth)
    assert_problem(r, 422, field=name)


async def test_numbers_in_bodies_out_of_range_are_422(api: Api) -> None:
    owner, cid = await _conversation_with_a_message(api)
    r = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": SEQ_MAX + 1}, headers=owner.auth)
    assert_problem(r, 422, field="seq")
    body = {"conversation_id": cid, "body": "x", "reply_to": SEQ_MAX + 1}
    assert_problem(await api.client.post("/api/messages/", json=body, headers=owner.auth), 422, field="reply_to")


async def test_nul_is_refused_where_text_is_taken_the_same_on_every_database(api: Api) -> None:
    owner, cid = await _conversation_with_a_message(api)
    post, patch, get = api.client.post, api.client.patch, api.client.get
    checks: list[tuple[Any, str]] = [
        (post("/api/login/", json={"username": "ali\x00ce", "password": "correct horse"}), "username"),
        (post("/api/login/", json={"username": "alice", "password": "correct\x00horse"}), "password"),
        (post("/api/register/", json={"username": "bob", "password": "pass\x00word1"}), "password"),
        (post("/api/register/", json={"username": "carol", "password": "password1", "display_name": "C\x00"}),
         "display_name"),
        (get("/api/users/", params={"q": "a\x00"}, headers=owner.auth), "q"),
        (get("/api/conversations/public/", params={"q": "a\x00"}, headers=owner.auth), "q"),
        (post("/api/messages/", json={"conversation_id": cid, "body": "hi\x00"}, headers=owner.auth), "body"),
        (post("/api/messages/", json={"conversation_id": cid, "body": "hi", "client_id": "c\x00"},
              headers=owner.auth), "client_id"),
        (patch(f"/api/conversations/{cid}/", json={"title": "t\x00"}, headers=owner.auth), "title"),
        (post("/api/conversations/", json={"kind": "group", "title": "a\x00"}, headers=owner.auth), "title"),
        (post("/api/messages/", json={"conversation_id": "c\x00", "body": "hi"}, headers=owner.auth),
         "conversation_id"),
        (get(f"/api/messages/{cid}%00/", headers=owner.auth), "conversation_id"),
        (get("/api/users/a%00b/", headers=owner.auth), "user_id"),
        (get("/api/conversations/", params={"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgImFcdTAwMDBiIl0"}, headers=owner.auth), "cursor"),
    ]  # fmt: skip
    for request, field in checks:
        assert_problem(await request, 422, field=field)


async def test_health_is_never_rate_limited(tmp_path: Path) -> None:
    app = create_app(Settings(memory=True, http_rate_per_minute=2, **FAST_HASHING))
    async with AsyncTestClient(app) as client:
        api = Api(client)
        person = await api.person()
        statuses = [(await client.get("/api/users/me/", headers=person.auth)).status_code for _ in range(4)]
        assert statuses[-1] == 429  # the caller's budget is spent
        for path in ("/health", "/ready", "/metrics"):
            for _ in range(3):
                assert (await client.get(path, headers=person.auth)).status_code == 200, path


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", None]
)
async def test_a_body_that_does_not_say_it_is_json_is_415(api: Api, content_type: str | None) -> None:
    owner = await api.person()
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"username": "x", "password": "y"}'
    r = await api.client.post("/api/login/", content=body, headers={**headers, "content-length": str(len(body))})
    if content_type is None:  # httpx sends none: a body without a type
        assert r.status_code == 415
    else:
        assert_problem(r, 415, slug="unsupported-media-type")
    json_ok = await api.client.post(
        "/api/conversations/",
        content=b'{"kind": "group", "title": "t"}',
        headers={**owner.auth, "content-type": "application/json; charset=utf-8"},
    )
    assert json_ok.status_code == 201


async def _refresh(api: Api, token: str) -> Any:
    return await api.client.post("/api/token/refresh/", json={"refresh_token": token})


async def test_two_refreshes_with_one_token_one_succeeds(api: Api) -> None:
    """Exactly one of two simultaneous refreshes gets a pair. The other presented a token that
    had just been rotated away, which is what a stolen token looks like: the session ends, the
    new pair with it (RFC 9700 4.14.2; the page and the Python client refresh one at a time)."""
    for _ in range(10):
        person = await api.person()
        first, second = await asyncio.gather(_refresh(api, person.refresh_token), _refresh(api, person.refresh_token))
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 401], (first.text, second.text)
        loser = first if first.status_code == 401 else second
        assert "revoked" in loser.json()["detail"]
        pair = (first if first.status_code == 200 else second).json()
        assert_problem(await _refresh(api, pair["refresh_token"]), 401)


async def test_a_rotated_refresh_token_presented_again_revokes_the_session(api: Api) -> None:
    person = await api.person()
    rotated = await _refresh(api, person.refresh_token)
    assert rotated.status_code == 200
    current = rotated.json()
    reused = await _refresh(api, person.refresh_token)  # the thief's copy, or the client's
    assert_problem(reused, 401)
    assert "revoked" in reused.json()["detail"]
    assert_problem(await _refresh(api, current["refresh_token"]), 401)  # the whole session is over
    me = await api.client.get("/api/users/me/", headers={"authorization": f"Bearer {current['access_token']}"})
    assert_problem(me, 401)
    other = await api.client.post("/api/login/", json={"username": person.username, "password": "correct horse"})
    assert other.status_code == 200  # other sessions are untouched: logging in again works


async def test_a_refresh_racing_a_logout_hands_out_no_working_pair(api: Api) -> None:
    """Whichever goes first, a logged-out session leaves no working pair behind: a logout that
    succeeded ends what a refresh gave; a logout that came after the refresh (its access token
    rotated away) is refused, and the client logs out with the new pair."""
    for _ in range(5):
        person = await api.person()
        refreshed, logged_out = await asyncio.gather(
            _refresh(api, person.refresh_token), api.client.post("/api/logout/", headers=person.auth)
        )
        if logged_out.status_code == 204:
            if refreshed.status_code == 200:
                pair = refreshed.json()
                me = await api.client.get("/api/users/me/", headers={"authorization": f"Bearer {pair['access_token']}"})
                assert_problem(me, 401)
                assert_problem(await _refresh(api, pair["refresh_token"]), 401)
            else:
                assert_problem(refreshed, 401)
        else:  # the refresh went first and retired the access token the logout carried
            assert_problem(logged_out, 401)
            assert refreshed.status_code == 200
            pair = refreshed.json()
            again = await api.client.post("/api/logout/", headers={"authorization": f"Bearer {pair['access_token']}"})
            assert again.status_code == 204
            assert_problem(await _refresh(api, pair["refresh_token"]), 401)
