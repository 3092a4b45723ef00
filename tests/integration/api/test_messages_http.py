import asyncio

from tests.integration.api.conftest import Api, assert_problem


async def test_send_returns_the_full_message(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.direct(a, b)
    r = await api.client.post("/api/messages/", json={"conversation_id": cid, "body": "hello"}, headers=a.auth)
    assert r.status_code == 201
    m = r.json()
    assert set(m) == {
        "id",
        "conversation_id",
        "seq",
        "sender_id",
        "body",
        "client_id",
        "reply_to",
        "created_at",
        "edited_at",
        "deleted",
    }
    assert (m["conversation_id"], m["seq"], m["sender_id"], m["body"], m["deleted"]) == (
        cid,
        1,
        a.id,
        "hello",
        False,
    )


async def test_seq_has_no_gaps_or_repeats_under_concurrent_sends(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.group(a, b)
    sent = await asyncio.gather(*(api.send(a if i % 2 else b, cid, f"m{i}") for i in range(40)))
    assert sorted(m["seq"] for m in sent) == list(range(1, 41))


async def test_client_id_makes_sending_idempotent(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.direct(a, b)
    payload = {"conversation_id": cid, "body": "once", "client_id": "c-1"}
    first = await api.client.post("/api/messages/", json=payload, headers=a.auth)
    again = await api.client.post("/api/messages/", json=payload | {"body": "changed"}, headers=a.auth)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other_sender = await api.client.post("/api/messages/", json=payload, headers=b.auth)
    assert other_sender.status_code == 201
    page = (await api.client.get(f"/api/messages/{cid}/", headers=a.auth)).json()
    assert [m["seq"] for m in page["items"]] == [1, 2]


async def test_bad_message_input_names_the_field(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.direct(a, b)
    cases = [
        ({"conversation_id": cid, "body": ""}, "body"),
        ({"conversation_id": cid, "body": "   "}, "body"),
        ({"conversation_id": cid, "body": "x" * 4001}, "body"),
        ({"conversation_id": cid, "body": "ok", "reply_to": 5}, "reply_to"),
        ({"conversation_id": cid, "body": "ok", "client_id": "c" * 65}, "client_id"),
        ({"conversation_id": cid, "body": "ok", "extra": 1}, "extra"),
        ({"body": "ok"}, "conversation_id"),
    ]
    for payload, field in cases:
        assert_problem(await api.client.post("/api/messages/", json=payload, headers=a.auth), 422, field=field)
    assert (
        await api.client.post("/api/messages/", json={"conversation_id": cid, "body": "x" * 4000}, headers=a.auth)
    ).status_code == 201
    page = (await api.client.get(f"/api/messages/{cid}/", headers=a.auth)).json()
    assert len(page["items"]) == 1


async def test_oversized_and_malformed_requests_are_clean_errors(api: Api) -> None:
    a = await api.person()
    huge = await api.client.post(
        "/api/messages/",
        content=b'{"body": "' + b"x" * 200_000 + b'"}',
        headers=a.auth | {"content-type": "application/json"},
    )
    assert_problem(huge, 413, slug="request-too-large")
    broken = await api.client.post(
        "/api/messages/", content=b"{not json", headers=a.auth | {"content-type": "application/json"}
    )
    assert_problem(broken, 400, slug="bad-request")


async def test_history_pages_by_seq(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.direct(a, b)
    for i in range(1, 8):
        await api.send(a, cid, f"m{i}")

    async def page(query: str) -> tuple[list[int], bool]:
        body = (await api.client.get(f"/api/messages/{cid}/?{query}", headers=b.auth)).json()
        return [m["seq"] for m in body["items"]], body["has_more"]

    assert await page("limit=3") == ([5, 6, 7], True)
    assert await page("before=5&limit=3") == ([2, 3, 4], True)
    assert await page("before=4&limit=3") == ([1, 2, 3], False)
    assert await page("after=4&limit=2") == ([5, 6], True)
    assert await page("after=5&limit=2") == ([6, 7], False)
    assert await page("after=1&before=5") == ([2, 3, 4], False)
    assert await page("") == ([1, 2, 3, 4, 5, 6, 7], False)
    assert_problem(await api.client.get(f"/api/messages/{cid}/?limit=201", headers=b.auth), 422, field="limit")
    assert_problem(await api.client.get(f"/api/messages/{cid}/?before=-1", headers=b.auth), 422, field="before")


async def test_edit_and_delete(api: Api) -> None:
    owner, author, other = await api.person(), await api.person(), await api.person()
    cid = await api.group(owner, author, other)
    await api.send(author, cid, "first draft")
    await api.send(author, cid, "second")
    url = f"/api/messages/{cid}/1/"
    assert_problem(await api.client.patch(url, json={"body": "hijack"}, headers=other.auth), 403)
    edited = await api.client.patch(url, json={"body": "final"}, headers=author.auth)
    assert (edited.json()["body"], edited.json()["edited_at"] is not None) == ("final", True)
    assert_problem(await api.client.delete(url, headers=other.auth), 403)
    gone = await api.client.delete(url, headers=owner.auth)
    assert gone.status_code == 200
    assert (gone.json()["deleted"], gone.json()["body"], gone.json()["seq"]) == (True, "", 1)
    assert gone.json()["edited_at"] is not None  # it was edited before it was deleted
    assert_problem(await api.client.patch(url, json={"body": "revive"}, headers=author.auth), 409)
    assert (await api.client.delete(f"/api/messages/{cid}/2/", headers=author.auth)).status_code == 200
    assert_problem(await api.client.delete(f"/api/messages/{cid}/9/", headers=author.auth), 404)
    items = (await api.client.get(f"/api/messages/{cid}/", headers=other.auth)).json()["items"]
    assert [(m["seq"], m["deleted"], m["body"]) for m in items] == [(1, True, ""), (2, True, "")]


async def test_reply_to_points_at_an_earlier_message(api: Api) -> None:
    a, b = await api.person(), await api.person()
    cid = await api.direct(a, b)
    await api.send(a, cid, "question?")
    reply = await api.send(b, cid, "answer", reply_to=1)
    assert reply["reply_to"] == 1


async def test_openapi_schema_is_served(api: Api) -> None:
    r = await api.client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in [
        "/api/register",
        "/api/login",
        "/api/conversations",
        "/api/messages",
        "/api/conversations/public",
    ]:
        assert any(p.rstrip("/") == path for p in paths), path
