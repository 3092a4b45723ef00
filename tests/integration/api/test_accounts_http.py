from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.api.conftest import Api, assert_problem


async def test_register_returns_the_user_without_secrets(client: AsyncTestClient[Any]) -> None:
    r = await client.post(
        "/api/register/", json={"username": "Alice_1", "password": "s3cret-pass", "display_name": "Alice"}
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "username", "display_name", "created_at"}
    assert body["username"] == "Alice_1"
    assert body["display_name"] == "Alice"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ab", "password": "long enough"}, "username"),
        ({"username": "has space", "password": "long enough"}, "username"),
        ({"username": "x" * 33, "password": "long enough"}, "username"),
        ({"username": "okname", "password": "short"}, "password"),
        ({"username": "okname", "password": "p" * 129}, "password"),
        ({"username": "okname", "password": "long enough", "admin": True}, "admin"),
        ({"password": "long enough"}, "username"),
        ({"username": 5, "password": "long enough"}, "username"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(
    client: AsyncTestClient[Any], payload: dict[str, Any], field: str
) -> None:
    assert_problem(await client.post("/api/register/", json=payload), 422, slug="validation-error", field=field)


async def test_usernames_are_unique_ignoring_case(client: AsyncTestClient[Any]) -> None:
    assert (await client.post("/api/register/", json={"username": "Bob", "password": "password1"})).status_code == 201
    r = await client.post("/api/register/", json={"username": "bOB", "password": "password2"})
    assert_problem(r, 409, slug="conflict", field="username")


async def test_login_failure_looks_the_same_for_unknown_users(api: Api) -> None:
    someone = await api.person()
    wrong = await api.client.post("/api/login/", json={"username": someone.username, "password": "wrong pass"})
    unknown = await api.client.post("/api/login/", json={"username": "nobody-here", "password": "wrong pass"})
    assert_problem(wrong, 401, slug="unauthenticated")
    assert_problem(unknown, 401, slug="unauthenticated")
    assert wrong.json() == unknown.json()


async def test_login_returns_a_bearer_pair_that_works(api: Api) -> None:
    await api.client.post("/api/register/", json={"username": "carol", "password": "password1"})
    r = await api.client.post("/api/login/", json={"username": "CAROL", "password": "password1"})
    body = r.json()
    assert r.status_code == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert body["access_token"] != body["refresh_token"]
    me = await api.client.get("/api/users/me/", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "carol"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer "])
async def test_missing_or_bad_tokens_get_401(client: AsyncTestClient[Any], header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = await client.get("/api/users/me/", headers=headers)
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_the_pair_and_retires_the_old_one(api: Api) -> None:
    p = await api.person()
    r = await api.client.post("/api/token/refresh/", json={"refresh_token": p.refresh_token})
    assert r.status_code == 200
    fresh = r.json()
    new_auth = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await api.client.get("/api/users/me/", headers=new_auth)).status_code == 200
    assert_problem(await api.client.get("/api/users/me/", headers=p.auth), 401)
    again = await api.client.post("/api/token/refresh/", json={"refresh_token": p.refresh_token})
    assert_problem(again, 401)


async def test_logout_revokes_at_once(api: Api) -> None:
    p = await api.person()
    assert (await api.client.post("/api/logout/", headers=p.auth)).status_code == 204
    assert_problem(await api.client.get("/api/users/me/", headers=p.auth), 401)
    r = await api.client.post("/api/token/refresh/", json={"refresh_token": p.refresh_token})
    assert_problem(r, 401)


async def test_user_search_is_a_prefix_search_with_cursor_paging(api: Api) -> None:
    viewer = await api.person("viewer")
    for name in ["zed_a", "Zed_b", "zed_c", "zebra", "other"]:
        await api.client.post("/api/register/", json={"username": name, "password": "password1"})
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"q": "ZED_", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/api/users/", params=params, headers=viewer.auth)).json()
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["zed_a", "Zed_b", "zed_c"]


async def test_user_search_rejects_bad_paging(api: Api) -> None:
    p = await api.person()
    assert_problem(await api.client.get("/api/users/?limit=0", headers=p.auth), 422, field="limit")
    assert_problem(await api.client.get("/api/users/?limit=abc", headers=p.auth), 422, field="limit")
    assert_problem(await api.client.get("/api/users/?cursor=%%%", headers=p.auth), 422, field="cursor")


async def test_a_user_profile_is_visible_to_others(api: Api) -> None:
    a, b = await api.person(), await api.person()
    r = await api.client.get(f"/api/users/{b.id}/", headers=a.auth)
    assert r.json()["username"] == b.username
    assert_problem(await api.client.get("/api/users/nope/", headers=a.auth), 404)
