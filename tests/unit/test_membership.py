"""Adding members and joining public groups."""

import pytest

from convocore.domain.conversations import Role
from convocore.domain.errors import Forbidden, Invalid, NotFound
from convocore.domain.events import MemberJoined
from tests.support.wiring import Chat


@pytest.mark.parametrize("adder", ["owner", "admin"])
async def test_the_owner_or_an_admin_adds_a_member(chat: Chat, adder: str) -> None:
    conversation_id, ann, bob, _, dan = await chat.team()

    member, created = await chat.add_member.execute(
        user_id=(ann if adder == "owner" else bob).id, conversation_id=conversation_id, new_user_id=dan.id
    )

    assert created is True
    assert member.role is Role.MEMBER
    assert (await chat.roles(conversation_id))[dan.id] == "member"
    assert await chat.member_count(conversation_id) == 4
    assert chat.events == [MemberJoined(conversation_id=conversation_id, member=member, user=dan)]
    entries, _ = await chat.inbox.execute(user_id=dan.id, before=None, limit=10)
    assert [e.conversation.id for e in entries] == [conversation_id]


async def test_a_new_member_starts_with_history_marked_read(chat: Chat) -> None:
    conversation_id, ann, _, _, dan = await chat.team()
    await chat.say(ann, conversation_id)
    await chat.say(ann, conversation_id)

    member, _ = await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=dan.id)

    assert member.last_read_seq == 2


async def test_only_the_owner_adds_an_admin(chat: Chat) -> None:
    conversation_id, ann, bob, _, dan = await chat.team()
    eve = await chat.sign_up("eve")

    with pytest.raises(Forbidden):
        await chat.add_member.execute(
            user_id=bob.id, conversation_id=conversation_id, new_user_id=dan.id, role=Role.ADMIN
        )
    member, _ = await chat.add_member.execute(
        user_id=ann.id, conversation_id=conversation_id, new_user_id=eve.id, role=Role.ADMIN
    )

    assert member.role is Role.ADMIN
    assert dan.id not in await chat.roles(conversation_id)


@pytest.mark.parametrize("role", [Role.MEMBER, Role.ADMIN])
async def test_a_plain_member_adds_nobody(chat: Chat, role: Role) -> None:
    conversation_id, _, _, cat, dan = await chat.team()

    with pytest.raises(Forbidden):
        await chat.add_member.execute(user_id=cat.id, conversation_id=conversation_id, new_user_id=dan.id, role=role)

    assert dan.id not in await chat.roles(conversation_id)
    assert await chat.member_count(conversation_id) == 3
    assert chat.events == []


async def test_nobody_is_added_as_a_second_owner(chat: Chat) -> None:
    conversation_id, ann, _, _, dan = await chat.team()

    with pytest.raises(Forbidden):
        await chat.add_member.execute(
            user_id=ann.id, conversation_id=conversation_id, new_user_id=dan.id, role=Role.OWNER
        )

    assert dan.id not in await chat.roles(conversation_id)


async def test_adding_an_existing_member_changes_nothing(chat: Chat) -> None:
    conversation_id, ann, _, cat, _ = await chat.team()
    await chat.say(cat, conversation_id)
    chat.events.clear()

    member, created = await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=cat.id)

    assert created is False
    assert (member.user_id, member.role, member.last_read_seq) == (cat.id, Role.MEMBER, 1)
    assert await chat.member_count(conversation_id) == 3
    assert chat.events == []


async def test_a_plain_member_may_not_add_even_someone_already_there(chat: Chat) -> None:
    conversation_id, _, bob, cat, _ = await chat.team()

    with pytest.raises(Forbidden):
        await chat.add_member.execute(user_id=cat.id, conversation_id=conversation_id, new_user_id=bob.id)

    assert (await chat.roles(conversation_id))[bob.id] == "admin"


async def test_adding_an_unknown_user_is_invalid(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()

    with pytest.raises(Invalid) as caught:
        await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id="ghost")

    assert caught.value.field == "user_id"
    assert await chat.member_count(conversation_id) == 3
    assert chat.events == []


async def test_nobody_is_added_to_a_direct_conversation(chat: Chat) -> None:
    ann, bob, cat = await chat.people("ann", "bob", "cat")
    conversation_id = await chat.direct(ann, bob)
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=cat.id)

    assert set(await chat.roles(conversation_id)) == {ann.id, bob.id}
    assert chat.events == []


async def test_an_outsider_cannot_add_to_a_conversation(chat: Chat) -> None:
    conversation_id, _, _, _, dan = await chat.team()
    eve = await chat.sign_up("eve")

    with pytest.raises(NotFound):
        await chat.add_member.execute(user_id=dan.id, conversation_id=conversation_id, new_user_id=eve.id)

    assert eve.id not in await chat.roles(conversation_id)


async def test_anyone_joins_a_public_group(chat: Chat) -> None:
    ann, dan = await chat.people("ann", "dan")
    conversation_id = await chat.group(ann, title="open", public=True)
    chat.events.clear()

    member, created = await chat.join.execute(user_id=dan.id, conversation_id=conversation_id)

    assert created is True
    assert member.role is Role.MEMBER
    assert (await chat.roles(conversation_id))[dan.id] == "member"
    assert await chat.member_count(conversation_id) == 2
    assert chat.events == [MemberJoined(conversation_id=conversation_id, member=member, user=dan)]


async def test_joining_twice_changes_nothing(chat: Chat) -> None:
    ann, dan = await chat.people("ann", "dan")
    conversation_id = await chat.group(ann, title="open", public=True)
    await chat.join.execute(user_id=dan.id, conversation_id=conversation_id)
    chat.events.clear()

    member, created = await chat.join.execute(user_id=dan.id, conversation_id=conversation_id)

    assert created is False
    assert member.user_id == dan.id
    assert await chat.member_count(conversation_id) == 2
    assert chat.events == []


@pytest.mark.parametrize("kind", ["private", "direct", "unknown"])
async def test_only_public_groups_can_be_joined(chat: Chat, kind: str) -> None:
    ann, bob, dan = await chat.people("ann", "bob", "dan")
    conversation_id = {
        "private": await chat.group(ann, title="closed"),
        "direct": await chat.direct(ann, bob),
        "unknown": "no-such-conversation",
    }[kind]
    chat.events.clear()

    with pytest.raises(NotFound):
        await chat.join.execute(user_id=dan.id, conversation_id=conversation_id)

    assert dan.id not in await chat.roles(conversation_id)
    assert chat.events == []


async def test_the_first_to_join_an_abandoned_public_group_owns_it(chat: Chat) -> None:
    ann, dan, eve = await chat.people("ann", "dan", "eve")
    conversation_id = await chat.group(ann, title="open", public=True)
    await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    first, _ = await chat.join.execute(user_id=dan.id, conversation_id=conversation_id)
    second, _ = await chat.join.execute(user_id=eve.id, conversation_id=conversation_id)

    assert (first.role, second.role) == (Role.OWNER, Role.MEMBER)
    assert await chat.roles(conversation_id) == {dan.id: "owner", eve.id: "member"}
