"""Removing members, leaving, succession and role changes."""

import pytest

from convocore.domain.conversations import Role
from convocore.domain.errors import Forbidden, NotFound
from convocore.domain.events import MemberLeft, MemberRoleChanged
from tests.support.wiring import Chat, FrozenClock


async def test_an_admin_removes_a_plain_member(chat: Chat) -> None:
    conversation_id, _, bob, cat, _ = await chat.team()

    await chat.remove_member.execute(user_id=bob.id, conversation_id=conversation_id, target_user_id=cat.id)

    assert cat.id not in await chat.roles(conversation_id)
    assert await chat.member_count(conversation_id) == 2
    assert chat.events == [MemberLeft(conversation_id=conversation_id, user_id=cat.id, removed_by=bob.id)]
    assert await chat.inbox.execute(user_id=cat.id, before=None, limit=10) == ([], None)
    with pytest.raises(NotFound):
        await chat.get_conversation.execute(user_id=cat.id, conversation_id=conversation_id)


async def test_the_owner_removes_an_admin(chat: Chat) -> None:
    conversation_id, ann, bob, _, _ = await chat.team()

    await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=bob.id)

    assert bob.id not in await chat.roles(conversation_id)


@pytest.mark.parametrize(("actor", "target"), [("bob", "ann"), ("bob", "eve"), ("cat", "dan"), ("cat", "bob")])
async def test_nobody_removes_someone_at_or_above_their_station(chat: Chat, actor: str, target: str) -> None:
    conversation_id, ann, bob, cat, dan = await chat.team()
    eve = await chat.sign_up("eve")
    await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=eve.id, role=Role.ADMIN)
    await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=dan.id)
    cast = {"ann": ann, "bob": bob, "cat": cat, "dan": dan, "eve": eve}
    roles_before = await chat.roles(conversation_id)
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.remove_member.execute(
            user_id=cast[actor].id, conversation_id=conversation_id, target_user_id=cast[target].id
        )

    assert await chat.roles(conversation_id) == roles_before
    assert await chat.member_count(conversation_id) == 5
    assert chat.events == []


async def test_removing_a_non_member_is_not_found(chat: Chat) -> None:
    conversation_id, ann, _, _, dan = await chat.team()

    with pytest.raises(NotFound):
        await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=dan.id)

    assert await chat.member_count(conversation_id) == 3


@pytest.mark.parametrize("leaver", ["bob", "cat"])
async def test_anyone_may_leave(chat: Chat, leaver: str) -> None:
    conversation_id, _, bob, cat, _ = await chat.team()
    who = bob if leaver == "bob" else cat

    await chat.remove_member.execute(user_id=who.id, conversation_id=conversation_id, target_user_id=who.id)

    assert who.id not in await chat.roles(conversation_id)
    assert chat.events == [MemberLeft(conversation_id=conversation_id, user_id=who.id, removed_by=who.id)]


async def test_an_owner_who_leaves_hands_over_to_the_longest_serving_admin(
    timed_chat: Chat, clock: FrozenClock
) -> None:
    ann, early_member, first_admin, second_admin = await timed_chat.people("ann", "mia", "adam", "zoe")
    conversation_id = await timed_chat.group(ann, early_member, title="team")
    for admin in (first_admin, second_admin):
        clock.advance(seconds=1)
        await timed_chat.add_member.execute(
            user_id=ann.id, conversation_id=conversation_id, new_user_id=admin.id, role=Role.ADMIN
        )
    timed_chat.events.clear()

    await timed_chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    assert await timed_chat.roles(conversation_id) == {
        early_member.id: "member",
        first_admin.id: "owner",
        second_admin.id: "admin",
    }
    left, promoted = timed_chat.events
    assert left == MemberLeft(conversation_id=conversation_id, user_id=ann.id, removed_by=ann.id)
    assert isinstance(promoted, MemberRoleChanged)
    assert (promoted.member.user_id, promoted.member.role) == (first_admin.id, Role.OWNER)


async def test_an_owner_who_leaves_without_admins_hands_over_to_the_longest_serving_member(
    timed_chat: Chat, clock: FrozenClock
) -> None:
    ann, first, second = await timed_chat.people("ann", "zed", "amy")
    conversation_id = await timed_chat.group(ann, title="team")
    for member in (first, second):
        clock.advance(seconds=1)
        await timed_chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=member.id)

    await timed_chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    assert await timed_chat.roles(conversation_id) == {first.id: "owner", second.id: "member"}


async def test_the_last_member_leaving_promotes_nobody(chat: Chat) -> None:
    ann = await chat.sign_up("ann")
    conversation_id = await chat.group(ann, title="solo")
    chat.events.clear()

    await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    assert await chat.roles(conversation_id) == {}
    assert await chat.member_count(conversation_id) == 0
    assert chat.events == [MemberLeft(conversation_id=conversation_id, user_id=ann.id, removed_by=ann.id)]


async def test_nobody_leaves_a_direct_conversation(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.direct(ann, bob)
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    assert set(await chat.roles(conversation_id)) == {ann.id, bob.id}
    assert chat.events == []


async def test_the_owner_promotes_a_member_to_admin(chat: Chat) -> None:
    conversation_id, ann, _, cat, _ = await chat.team()

    member = await chat.change_role.execute(
        user_id=ann.id, conversation_id=conversation_id, target_user_id=cat.id, role=Role.ADMIN
    )

    assert member.role is Role.ADMIN
    assert (await chat.roles(conversation_id))[cat.id] == "admin"
    [event] = chat.events
    assert isinstance(event, MemberRoleChanged)
    assert (event.member.user_id, event.member.role) == (cat.id, Role.ADMIN)


async def test_the_owner_demotes_an_admin(chat: Chat) -> None:
    conversation_id, ann, bob, _, _ = await chat.team()

    await chat.set_role(ann, conversation_id, bob, Role.MEMBER)

    assert (await chat.roles(conversation_id))[bob.id] == "member"


@pytest.mark.parametrize("actor", ["bob", "cat"])
async def test_only_the_owner_changes_roles(chat: Chat, actor: str) -> None:
    conversation_id, _, bob, cat, _ = await chat.team()
    roles_before = await chat.roles(conversation_id)

    with pytest.raises(Forbidden):
        await chat.change_role.execute(
            user_id=(bob if actor == "bob" else cat).id,
            conversation_id=conversation_id,
            target_user_id=cat.id,
            role=Role.ADMIN,
        )

    assert await chat.roles(conversation_id) == roles_before
    assert chat.events == []


async def test_making_someone_owner_demotes_the_old_owner_to_admin(chat: Chat) -> None:
    conversation_id, ann, _, cat, _ = await chat.team()

    await chat.set_role(ann, conversation_id, cat, Role.OWNER)

    roles = await chat.roles(conversation_id)
    assert (roles[cat.id], roles[ann.id]) == ("owner", "admin")
    assert list(roles.values()).count("owner") == 1
    assert {(e.member.user_id, e.member.role) for e in chat.events_of(MemberRoleChanged)} == {
        (cat.id, Role.OWNER),
        (ann.id, Role.ADMIN),
    }


@pytest.mark.parametrize("who", ["owner", "member"])
async def test_a_role_change_to_the_same_role_announces_nothing(chat: Chat, who: str) -> None:
    conversation_id, ann, _, cat, _ = await chat.team()
    target, role = (ann, Role.OWNER) if who == "owner" else (cat, Role.MEMBER)
    roles_before = await chat.roles(conversation_id)

    member = await chat.set_role(ann, conversation_id, target, role)

    assert member.role is role
    assert await chat.roles(conversation_id) == roles_before
    assert chat.events == []


async def test_the_owner_cannot_demote_themselves(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()

    with pytest.raises(Forbidden):
        await chat.change_role.execute(
            user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id, role=Role.MEMBER
        )

    assert (await chat.roles(conversation_id))[ann.id] == "owner"


async def test_a_role_change_for_a_non_member_is_not_found(chat: Chat) -> None:
    conversation_id, ann, _, _, dan = await chat.team()

    with pytest.raises(NotFound):
        await chat.change_role.execute(
            user_id=ann.id, conversation_id=conversation_id, target_user_id=dan.id, role=Role.ADMIN
        )
