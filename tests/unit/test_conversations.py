"""Starting, reading and updating conversations, and when events go out."""

import asyncio

import pytest

from convocore.domain.conversations import Kind, Role
from convocore.domain.errors import Forbidden, Invalid, NotFound
from convocore.domain.events import ConversationUpdated, Event, MemberJoined
from tests.support.wiring import Chat


async def test_a_direct_conversation_has_both_people_as_plain_members(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")

    detail, created = await chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=[bob.id])

    assert created is True
    assert detail.conversation.kind is Kind.DIRECT
    assert await chat.roles(detail.conversation.id) == {ann.id: "member", bob.id: "member"}
    assert set(detail.users) == {ann.id, bob.id}
    assert {e.member.user_id for e in chat.events_of(MemberJoined)} == {ann.id, bob.id}


@pytest.mark.parametrize("second_starter", ["same", "other"])
async def test_a_pair_has_one_direct_conversation_whoever_starts_it(chat: Chat, second_starter: str) -> None:
    ann, bob = await chat.people("ann", "bob")
    first, _ = await chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=[bob.id])
    events_before = len(chat.events)
    starter, other = (ann, bob) if second_starter == "same" else (bob, ann)

    again, created = await chat.start.execute(user_id=starter.id, kind=Kind.DIRECT, members=[other.id])

    assert created is False
    assert again.conversation.id == first.conversation.id
    assert len(chat.events) == events_before
    entries, _ = await chat.inbox.execute(user_id=ann.id, before=None, limit=10)
    assert len(entries) == 1


async def test_concurrent_starts_of_one_pair_make_one_conversation(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")

    results = await asyncio.gather(
        chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=[bob.id]),
        chat.start.execute(user_id=bob.id, kind=Kind.DIRECT, members=[ann.id]),
    )

    assert sorted(created for _, created in results) == [False, True]
    assert len({detail.conversation.id for detail, _ in results}) == 1


@pytest.mark.parametrize("who", ["self", "nobody", "two", "self_and_other"])
async def test_a_direct_conversation_names_exactly_one_other_user(chat: Chat, who: str) -> None:
    ann, bob, cat = await chat.people("ann", "bob", "cat")
    members = {"self": [ann.id], "nobody": [], "two": [bob.id, cat.id], "self_and_other": [ann.id, bob.id]}[who]

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=members)

    assert caught.value.field == "members"
    assert await chat.inbox.execute(user_id=ann.id, before=None, limit=10) == ([], None)
    assert chat.events == []


@pytest.mark.parametrize(
    ("title", "public", "field"), [("us", False, "title"), ("", False, "title"), (None, True, "public")]
)
async def test_a_direct_conversation_has_no_title_and_is_never_public(
    chat: Chat, title: str | None, public: bool, field: str
) -> None:
    ann, bob = await chat.people("ann", "bob")

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=[bob.id], title=title, public=public)

    assert caught.value.field == field
    assert await chat.inbox.execute(user_id=ann.id, before=None, limit=10) == ([], None)
    assert chat.events == []


async def test_a_direct_conversation_with_an_unknown_user_is_invalid(chat: Chat) -> None:
    ann = await chat.sign_up("ann")

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.DIRECT, members=["no-such-user"])

    assert caught.value.field == "members"
    assert await chat.inbox.execute(user_id=ann.id, before=None, limit=10) == ([], None)
    assert chat.events == []


async def test_a_group_makes_its_creator_owner_and_everyone_else_members(chat: Chat) -> None:
    ann, bob, cat = await chat.people("ann", "bob", "cat")

    detail, created = await chat.start.execute(
        user_id=ann.id, kind=Kind.GROUP, members=[bob.id, cat.id, bob.id, ann.id], title="  Book club  "
    )

    conversation = await chat.stored_conversation(detail.conversation.id)
    assert conversation is not None
    assert created is True
    assert (conversation.title, conversation.public, conversation.member_count) == ("Book club", False, 3)
    assert await chat.roles(conversation.id) == {ann.id: "owner", bob.id: "member", cat.id: "member"}
    assert len(chat.events_of(MemberJoined)) == 3


async def test_announcements_of_a_new_group_say_who_joined(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")

    await chat.group(ann, bob)

    assert {(e.member.user_id, e.user.username if e.user else None) for e in chat.events_of(MemberJoined)} == {
        (ann.id, "ann"),
        (bob.id, "bob"),
    }


@pytest.mark.parametrize("title", [None, "", "   ", "x" * 201])
async def test_a_group_needs_a_title_of_at_most_200_characters(chat: Chat, title: str | None) -> None:
    ann, bob = await chat.people("ann", "bob")

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.GROUP, members=[bob.id], title=title)

    assert caught.value.field == "title"
    assert await chat.inbox.execute(user_id=ann.id, before=None, limit=10) == ([], None)


async def test_a_group_with_an_unknown_member_is_not_created(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.GROUP, members=[bob.id, "ghost"], title="t")

    assert caught.value.field == "members"
    assert await chat.inbox.execute(user_id=bob.id, before=None, limit=10) == ([], None)
    assert chat.events == []


async def test_a_group_of_more_than_1000_is_invalid(chat: Chat) -> None:
    ann = await chat.sign_up("ann")

    with pytest.raises(Invalid) as caught:
        await chat.start.execute(user_id=ann.id, kind=Kind.GROUP, members=[f"u{i}" for i in range(1000)], title="t")

    assert caught.value.field == "members"


async def test_a_member_sees_the_conversation_with_its_people(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="team")

    detail = await chat.get_conversation.execute(user_id=bob.id, conversation_id=conversation_id)

    assert detail.conversation.title == "team"
    assert {m.user_id: m.role for m in detail.members} == {ann.id: Role.OWNER, bob.id: Role.MEMBER}
    assert {uid: u.username for uid, u in detail.users.items()} == {ann.id: "ann", bob.id: "bob"}


@pytest.mark.parametrize("conversation", ["theirs", "unknown"])
async def test_a_non_member_is_told_the_conversation_does_not_exist(chat: Chat, conversation: str) -> None:
    ann, bob, eve = await chat.people("ann", "bob", "eve")
    conversation_id = await chat.group(ann, bob) if conversation == "theirs" else "no-such-conversation"

    with pytest.raises(NotFound):
        await chat.get_conversation.execute(user_id=eve.id, conversation_id=conversation_id)


async def test_an_admin_renames_and_publishes_a_group(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="old")
    await chat.set_role(ann, conversation_id, bob, Role.ADMIN)
    chat.events.clear()

    detail = await chat.update.execute(user_id=bob.id, conversation_id=conversation_id, title=" new ", public=True)

    stored = await chat.stored_conversation(conversation_id)
    assert stored is not None
    assert (stored.title, stored.public) == ("new", True)
    assert (detail.conversation.title, detail.conversation.public) == ("new", True)
    [event] = chat.events
    assert isinstance(event, ConversationUpdated)
    assert (event.conversation_id, event.conversation.title) == (conversation_id, "new")


async def test_changing_only_visibility_keeps_the_title(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="team")

    await chat.update.execute(user_id=ann.id, conversation_id=conversation_id, public=True)

    stored = await chat.stored_conversation(conversation_id)
    assert stored is not None
    assert (stored.title, stored.public) == ("team", True)


async def test_an_update_that_changes_nothing_announces_nothing(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="team", public=True)
    chat.events.clear()

    detail = await chat.update.execute(user_id=ann.id, conversation_id=conversation_id, title=" team ", public=True)

    assert (detail.conversation.title, detail.conversation.public) == ("team", True)
    assert chat.events == []


async def test_a_plain_member_may_not_update_a_group(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="team")
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.update.execute(user_id=bob.id, conversation_id=conversation_id, title="mine")

    stored = await chat.stored_conversation(conversation_id)
    assert stored is not None
    assert stored.title == "team"
    assert chat.events == []


@pytest.mark.parametrize("kind", ["group", "direct"])
async def test_an_empty_update_still_needs_the_right_to_update(chat: Chat, kind: str) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob) if kind == "group" else await chat.direct(ann, bob)
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.update.execute(user_id=bob.id, conversation_id=conversation_id)

    assert chat.events == []


async def test_a_direct_conversation_cannot_be_updated(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.direct(ann, bob)
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.update.execute(user_id=ann.id, conversation_id=conversation_id, public=True)

    stored = await chat.stored_conversation(conversation_id)
    assert stored is not None
    assert stored.public is False
    assert chat.events == []


async def test_an_update_to_an_invalid_title_changes_nothing(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.group(ann, bob, title="team")
    chat.events.clear()

    with pytest.raises(Invalid) as caught:
        await chat.update.execute(user_id=ann.id, conversation_id=conversation_id, title="  ", public=True)

    assert caught.value.field == "title"
    stored = await chat.stored_conversation(conversation_id)
    assert stored is not None
    assert (stored.title, stored.public) == ("team", False)
    assert chat.events == []


async def test_events_are_published_only_after_the_unit_of_work_has_ended(chat: Chat) -> None:
    """Nothing uncommitted is broadcast, and publishing never holds the store (house style)."""
    store_held_while_publishing: list[tuple[str, bool]] = []

    def observe(event: Event) -> None:
        store_held_while_publishing.append((type(event).__name__, chat.uow.store.lock.locked()))

    chat.broadcaster.add_listener(observe)
    ann, bob, cat = await chat.people("ann", "bob", "cat")
    conversation_id = await chat.group(ann, bob, title="team")
    await chat.direct(ann, cat)
    await chat.update.execute(user_id=ann.id, conversation_id=conversation_id, title="renamed")
    await chat.add_member.execute(user_id=ann.id, conversation_id=conversation_id, new_user_id=cat.id)
    await chat.set_role(ann, conversation_id, bob, Role.ADMIN)
    await chat.say(cat, conversation_id)
    await chat.mark_read.execute(user_id=bob.id, conversation_id=conversation_id, seq=1)
    await chat.remove_member.execute(user_id=ann.id, conversation_id=conversation_id, target_user_id=ann.id)

    assert len(store_held_while_publishing) == len(chat.events) > 0
    assert [name for name, held in store_held_while_publishing if held] == []
