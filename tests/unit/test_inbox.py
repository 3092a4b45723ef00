"""The inbox, discovery of public groups, and read markers."""

import pytest

from convocore.application.ports import InboxCursor, TitleCursor
from convocore.domain.errors import Invalid, NotFound
from convocore.domain.events import ReadMarkerMoved
from tests.support.wiring import Chat, FrozenClock


async def test_the_inbox_lists_conversations_by_latest_activity(timed_chat: Chat, clock: FrozenClock) -> None:
    ann, bob, cat = await timed_chat.people("ann", "bob", "cat")
    first = await timed_chat.direct(ann, bob)
    clock.advance(seconds=1)
    second = await timed_chat.group(ann, bob, cat)
    clock.advance(seconds=1)
    third = await timed_chat.direct(ann, cat)
    clock.advance(seconds=1)

    await timed_chat.say(bob, first, "bump")

    entries, cursor = await timed_chat.inbox.execute(user_id=ann.id, before=None, limit=10)
    assert [e.conversation.id for e in entries] == [first, third, second]
    assert entries[0].last_message is not None
    assert entries[0].last_message.body == "bump"
    assert entries[1].last_message is None
    assert cursor is None


async def test_unread_counts_follow_from_the_inbox(timed_chat: Chat, clock: FrozenClock) -> None:
    ann, bob = await timed_chat.people("ann", "bob")
    conversation_id = await timed_chat.direct(ann, bob)
    for _ in range(3):
        clock.advance(seconds=1)
        await timed_chat.say(bob, conversation_id)
    await timed_chat.mark_read.execute(user_id=ann.id, conversation_id=conversation_id, seq=1)

    [ann_entry], _ = await timed_chat.inbox.execute(user_id=ann.id, before=None, limit=10)
    [bob_entry], _ = await timed_chat.inbox.execute(user_id=bob.id, before=None, limit=10)

    assert ann_entry.conversation.last_seq - ann_entry.member.last_read_seq == 2
    assert bob_entry.conversation.last_seq - bob_entry.member.last_read_seq == 0


async def test_the_inbox_pages_with_a_cursor_without_gaps_or_repeats(timed_chat: Chat, clock: FrozenClock) -> None:
    ann, bob = await timed_chat.people("ann", "bob")
    created = []
    for i in range(7):
        clock.advance(seconds=1)
        created.append(await timed_chat.group(ann, bob, title=f"g{i}"))
    seen: list[str] = []
    cursor: InboxCursor | None = None

    for _ in range(10):
        page, cursor = await timed_chat.inbox.execute(user_id=bob.id, before=cursor, limit=3)
        seen += [e.conversation.id for e in page]
        if cursor is None:
            break

    assert seen == created[::-1]


async def test_conversations_active_at_the_same_instant_page_without_loss(timed_chat: Chat) -> None:
    ann, bob = await timed_chat.people("ann", "bob")
    created = {await timed_chat.group(ann, bob, title=f"g{i}") for i in range(5)}
    seen: list[str] = []
    cursor: InboxCursor | None = None

    for _ in range(10):
        page, cursor = await timed_chat.inbox.execute(user_id=ann.id, before=cursor, limit=2)
        seen += [e.conversation.id for e in page]
        if cursor is None:
            break

    assert sorted(seen) == sorted(created)


async def test_discovery_finds_public_groups_by_a_substring_of_the_title(chat: Chat) -> None:
    ann, bob = await chat.people("ann", "bob")
    await chat.group(ann, title="Python Users", public=True)
    await chat.group(ann, title="cpython core", public=True)
    await chat.group(ann, title="Secret PYTHON", public=False)
    await chat.group(ann, title="Rust", public=True)
    await chat.direct(ann, bob)

    found, cursor = await chat.discover.execute(query="pyTHon", after=None, limit=10)

    assert sorted(c.title or "" for c in found) == ["Python Users", "cpython core"]
    assert cursor is None


async def test_discovery_pages_with_a_cursor_without_gaps_or_repeats(chat: Chat) -> None:
    ann = await chat.sign_up("ann")
    titles = ["club a", "club b", "club b", "club c", "club d", "club e", "club f"]
    created = [await chat.group(ann, title=title, public=True) for title in titles]
    await chat.group(ann, title="club hidden", public=False)
    seen: list[str] = []
    cursor: TitleCursor | None = None

    for _ in range(10):
        page, cursor = await chat.discover.execute(query="CLUB", after=cursor, limit=2)
        seen += [c.id for c in page]
        if cursor is None:
            break

    assert sorted(seen) == sorted(created)
    assert len(seen) == len(created)


async def test_discovery_rejects_an_overlong_query(chat: Chat) -> None:
    with pytest.raises(Invalid) as caught:
        await chat.discover.execute(query="x" * 201, after=None, limit=10)

    assert caught.value.field == "q"


async def conversation_with_messages(chat: Chat, count: int) -> tuple[str, str]:
    """A direct conversation in which bob has sent ``count`` messages; returns (id, ann's id)."""
    ann, bob = await chat.people("ann", "bob")
    conversation_id = await chat.direct(ann, bob)
    for i in range(count):
        await chat.say(bob, conversation_id, f"m{i}")
    chat.events.clear()
    return conversation_id, ann.id


async def test_mark_read_moves_the_marker_and_announces_it(chat: Chat) -> None:
    conversation_id, ann_id = await conversation_with_messages(chat, 5)

    member, last_seq = await chat.mark_read.execute(user_id=ann_id, conversation_id=conversation_id, seq=3)

    assert (member.last_read_seq, last_seq) == (3, 5)
    stored = await chat.stored_member(conversation_id, ann_id)
    assert stored is not None
    assert stored.last_read_seq == 3
    assert chat.events == [ReadMarkerMoved(conversation_id=conversation_id, user_id=ann_id, seq=3)]


async def test_mark_read_never_moves_backwards_and_then_says_nothing(chat: Chat) -> None:
    conversation_id, ann_id = await conversation_with_messages(chat, 5)
    await chat.mark_read.execute(user_id=ann_id, conversation_id=conversation_id, seq=4)
    chat.events.clear()

    member, _ = await chat.mark_read.execute(user_id=ann_id, conversation_id=conversation_id, seq=2)

    stored = await chat.stored_member(conversation_id, ann_id)
    assert stored is not None
    assert member.last_read_seq == stored.last_read_seq == 4
    assert chat.events == []


async def test_mark_read_stops_at_the_last_message(chat: Chat) -> None:
    conversation_id, ann_id = await conversation_with_messages(chat, 5)

    member, _ = await chat.mark_read.execute(user_id=ann_id, conversation_id=conversation_id, seq=500)

    stored = await chat.stored_member(conversation_id, ann_id)
    assert stored is not None
    assert member.last_read_seq == stored.last_read_seq == 5
    assert chat.events == [ReadMarkerMoved(conversation_id=conversation_id, user_id=ann_id, seq=5)]


async def test_mark_read_rejects_a_negative_seq(chat: Chat) -> None:
    conversation_id, ann_id = await conversation_with_messages(chat, 5)

    with pytest.raises(Invalid) as caught:
        await chat.mark_read.execute(user_id=ann_id, conversation_id=conversation_id, seq=-1)

    assert caught.value.field == "seq"
    assert chat.events == []


async def test_mark_read_by_a_non_member_is_not_found(chat: Chat) -> None:
    conversation_id, _ = await conversation_with_messages(chat, 1)
    eve = await chat.sign_up("eve")

    with pytest.raises(NotFound):
        await chat.mark_read.execute(user_id=eve.id, conversation_id=conversation_id, seq=1)
