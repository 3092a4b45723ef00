from tests.integration.api.conftest import Api, assert_problem


async def test_direct_conversation_is_unique_per_pair(api: Api) -> None:
    a, b = await api.person(), await api.person()
    first = await api.client.post("/api/conversations/", json={"kind": "direct", "members": [b.id]}, headers=a.auth)
    again = await api.client.post("/api/conversations/", json={"kind": "direct", "members": [a.id]}, headers=b.auth)
    assert first.status_code == 201
    assert again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    body = first.json()
    assert body["kind"] == "direct"
    assert body["title"] is None
    assert sorted(m["user_id"] for m in body["members"]) == sorted([a.id, b.id])


async def test_direct_conversation_needs_exactly_one_known_other(api: Api) -> None:
    a, b, c = await api.person(), await api.person(), await api.person()
    for members in ([], [a.id], [b.id, c.id], ["unknown-user"]):
        r = await api.client.post("/api/conversations/", json={"kind": "direct", "members": members}, headers=a.auth)
        assert_problem(r, 422, field="members")


async def test_group_creator_is_owner_and_details_show_roles(api: Api) -> None:
    owner, m = await api.person(), await api.person()
    cid = await api.group(owner, m, title="  Launch  ")
    body = (await api.client.get(f"/api/conversations/{cid}/", headers=m.auth)).json()
    roles = {x["user_id"]: x["role"] for x in body["members"]}
    assert roles == {owner.id: "owner", m.id: "member"}
    assert body["title"] == "Launch"
    assert {x["username"] for x in body["members"]} == {owner.username, m.username}


async def test_non_members_cannot_tell_a_conversation_exists(api: Api) -> None:
    owner, outsider = await api.person(), await api.person()
    cid = await api.group(owner)
    missing = await api.client.get("/api/conversations/does-not-exist/", headers=outsider.auth)
    hidden = await api.client.get(f"/api/conversations/{cid}/", headers=outsider.auth)
    assert_problem(hidden, 404)
    assert hidden.json() == missing.json()
    for r in [
        await api.client.patch(f"/api/conversations/{cid}/", json={"title": "x"}, headers=outsider.auth),
        await api.client.post(
            f"/api/conversations/{cid}/members/", json={"user_id": outsider.id}, headers=outsider.auth
        ),
        await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": 1}, headers=outsider.auth),
        await api.client.get(f"/api/messages/{cid}/", headers=outsider.auth),
        await api.client.post("/api/messages/", json={"conversation_id": cid, "body": "hi"}, headers=outsider.auth),
        await api.client.post(f"/api/conversations/{cid}/join/", headers=outsider.auth),
    ]:
        assert_problem(r, 404)


async def test_inbox_orders_by_activity_with_unread_counts_and_cursor(api: Api) -> None:
    me, other = await api.person(), await api.person()
    ids = [await api.group(other, me, title=f"g{i}") for i in range(3)]
    await api.send(other, ids[0], "one")
    await api.send(other, ids[0], "two")
    await api.send(me, ids[1], "mine")
    first = (await api.client.get("/api/conversations/?limit=2", headers=me.auth)).json()
    rest = (await api.client.get(f"/api/conversations/?cursor={first['next_cursor']}", headers=me.auth)).json()
    order = [c["id"] for c in first["items"] + rest["items"]]
    assert order == [ids[1], ids[0], ids[2]]
    assert rest["next_cursor"] is None
    by_id = {c["id"]: c for c in first["items"] + rest["items"]}
    assert by_id[ids[0]]["unread_count"] == 2
    assert by_id[ids[0]]["last_message"]["body"] == "two"
    assert by_id[ids[1]]["unread_count"] == 0  # your own message is read
    assert by_id[ids[2]]["last_message"] is None


async def test_read_marker_moves_forward_only(api: Api) -> None:
    me, other = await api.person(), await api.person()
    cid = await api.group(other, me)
    for i in range(3):
        await api.send(other, cid, f"m{i}")
    r = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": 2}, headers=me.auth)
    assert r.json() == {
        "conversation_id": cid,
        "user_id": me.id,
        "last_read_seq": 2,
        "last_seq": 3,
        "unread_count": 1,
    }
    back = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": 1}, headers=me.auth)
    assert back.json()["last_read_seq"] == 2
    past = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": 99}, headers=me.auth)
    assert past.json()["last_read_seq"] == 3
    bad = await api.client.post(f"/api/conversations/{cid}/read/", json={"seq": -1}, headers=me.auth)
    assert_problem(bad, 422, field="seq")


async def test_rename_and_visibility_are_for_owner_and_admins(api: Api) -> None:
    owner, admin, member = await api.person(), await api.person(), await api.person()
    cid = await api.group(owner, member)
    await api.client.post(
        f"/api/conversations/{cid}/members/", json={"user_id": admin.id, "role": "admin"}, headers=owner.auth
    )
    denied = await api.client.patch(f"/api/conversations/{cid}/", json={"title": "mine"}, headers=member.auth)
    assert_problem(denied, 403, slug="forbidden")
    ok = await api.client.patch(
        f"/api/conversations/{cid}/", json={"title": "Renamed", "public": True}, headers=admin.auth
    )
    assert ok.status_code == 200
    assert (ok.json()["title"], ok.json()["public"]) == ("Renamed", True)
    empty = await api.client.patch(f"/api/conversations/{cid}/", json={"title": "  "}, headers=owner.auth)
    assert_problem(empty, 422, field="title")


async def test_direct_conversations_keep_their_shape(api: Api) -> None:
    a, b, c = await api.person(), await api.person(), await api.person()
    cid = await api.direct(a, b)
    assert_problem(await api.client.patch(f"/api/conversations/{cid}/", json={"title": "x"}, headers=a.auth), 403)
    add = await api.client.post(f"/api/conversations/{cid}/members/", json={"user_id": c.id}, headers=a.auth)
    assert_problem(add, 403)
    assert_problem(await api.client.delete(f"/api/conversations/{cid}/members/{a.id}/", headers=a.auth), 403)


async def test_member_management(api: Api) -> None:
    owner, admin, m1, m2 = [await api.person() for _ in range(4)]
    cid = await api.group(owner, m1)
    base = f"/api/conversations/{cid}/members/"
    added = await api.client.post(base, json={"user_id": admin.id, "role": "admin"}, headers=owner.auth)
    assert added.status_code == 201
    assert added.json()["role"] == "admin"
    twice = await api.client.post(base, json={"user_id": admin.id}, headers=owner.auth)
    assert twice.status_code == 200
    assert_problem(await api.client.post(base, json={"user_id": m2.id}, headers=m1.auth), 403)
    assert_problem(await api.client.post(base, json={"user_id": m2.id, "role": "admin"}, headers=admin.auth), 403)
    assert_problem(await api.client.post(base, json={"user_id": "ghost"}, headers=owner.auth), 422, field="user_id")
    assert (await api.client.post(base, json={"user_id": m2.id}, headers=admin.auth)).status_code == 201
    assert_problem(await api.client.delete(f"{base}{owner.id}/", headers=admin.auth), 403)
    assert (await api.client.delete(f"{base}{m2.id}/", headers=admin.auth)).status_code == 204
    assert (await api.client.delete(f"{base}{m1.id}/", headers=m1.auth)).status_code == 204  # leaving
    assert_problem(await api.client.get(f"/api/conversations/{cid}/", headers=m1.auth), 404)
    roles = {
        x["user_id"]: x["role"]
        for x in (await api.client.get(f"/api/conversations/{cid}/", headers=owner.auth)).json()["members"]
    }
    assert roles == {owner.id: "owner", admin.id: "admin"}


async def test_role_changes_and_ownership_handover(api: Api) -> None:
    owner, m = await api.person(), await api.person()
    cid = await api.group(owner, m)
    url = f"/api/conversations/{cid}/members/{m.id}/"
    assert_problem(await api.client.patch(url, json={"role": "admin"}, headers=m.auth), 403)
    assert_problem(await api.client.patch(url, json={"role": "king"}, headers=owner.auth), 422, field="role")
    r = await api.client.patch(url, json={"role": "owner"}, headers=owner.auth)
    assert r.json()["role"] == "owner"
    roles = {
        x["user_id"]: x["role"]
        for x in (await api.client.get(f"/api/conversations/{cid}/", headers=m.auth)).json()["members"]
    }
    assert roles == {owner.id: "admin", m.id: "owner"}


async def test_owner_leaving_hands_over_the_group(api: Api) -> None:
    owner, m = await api.person(), await api.person()
    cid = await api.group(owner, m)
    assert (
        await api.client.delete(f"/api/conversations/{cid}/members/{owner.id}/", headers=owner.auth)
    ).status_code == 204
    members = (await api.client.get(f"/api/conversations/{cid}/", headers=m.auth)).json()["members"]
    assert [(x["user_id"], x["role"]) for x in members] == [(m.id, "owner")]


async def test_public_groups_can_be_discovered_and_joined(api: Api) -> None:
    owner, walker = await api.person(), await api.person()
    public_ids = [await api.group(owner, title=f"Python meetup {i}", public=True) for i in range(3)]
    private = await api.group(owner, title="Python secret")
    seen, cursor = [], None
    while True:
        url = "/api/conversations/public/?q=PYTHON&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(url, headers=walker.auth)).json()
        seen += [c["id"] for c in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == public_ids
    assert private not in seen
    joined = await api.client.post(f"/api/conversations/{public_ids[0]}/join/", headers=walker.auth)
    assert joined.status_code == 201
    assert joined.json()["role"] == "member"
    assert (await api.client.post(f"/api/conversations/{public_ids[0]}/join/", headers=walker.auth)).status_code == 200
    assert_problem(await api.client.post(f"/api/conversations/{private}/join/", headers=walker.auth), 404)


async def test_adding_an_existing_member_still_needs_the_right_to_add(api: Api) -> None:
    owner, m1, m2 = await api.person(), await api.person(), await api.person()
    cid = await api.group(owner, m1, m2)
    r = await api.client.post(f"/api/conversations/{cid}/members/", json={"user_id": m2.id}, headers=m1.auth)
    assert_problem(r, 403)


async def test_the_first_to_join_an_abandoned_public_group_owns_it(api: Api) -> None:
    owner, walker = await api.person(), await api.person()
    cid = await api.group(owner, title="left behind", public=True)
    assert (
        await api.client.delete(f"/api/conversations/{cid}/members/{owner.id}/", headers=owner.auth)
    ).status_code == 204
    joined = await api.client.post(f"/api/conversations/{cid}/join/", headers=walker.auth)
    assert joined.json()["role"] == "owner"


async def test_direct_conversations_reject_a_title_or_publicity(api: Api) -> None:
    a, b = await api.person(), await api.person()
    for extra, field in (({"title": "x"}, "title"), ({"public": True}, "public")):
        r = await api.client.post(
            "/api/conversations/", json={"kind": "direct", "members": [b.id], **extra}, headers=a.auth
        )
        assert_problem(r, 422, field=field)


async def test_member_responses_and_roster(api: Api) -> None:
    owner, m = await api.person(), await api.person()
    cid = await api.group(owner)
    added = (
        await api.client.post(f"/api/conversations/{cid}/members/", json={"user_id": m.id}, headers=owner.auth)
    ).json()
    assert set(added) == {"conversation_id", "user_id", "role", "joined_at", "last_read_seq"}
    roster = (await api.client.get(f"/api/conversations/{cid}/", headers=m.auth)).json()["members"]
    assert {x["username"] for x in roster} == {owner.username, m.username}
