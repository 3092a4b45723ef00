"""Editing and tombstoning messages."""

import pytest

from convocore.domain.errors import Conflict, Forbidden, Invalid, NotFound
from convocore.domain.events import MessageDeleted, MessageUpdated
from tests.support.wiring import Chat


async def test_the_author_edits_a_message(chat: Chat) -> None:
    conversation_id, _, _, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "frist")
    chat.events.clear()

    edited = await chat.edit.execute(user_id=cat.id, conversation_id=conversation_id, seq=1, body="first")

    stored = await chat.stored_message(conversation_id, 1)
    assert stored is not None
    assert (stored.body, stored.seq) == ("first", 1)
    assert stored.edited_at is not None
    assert stored.edited_at >= stored.created_at
    assert chat.events == [MessageUpdated(message=edited)]


@pytest.mark.parametrize("editor", ["ann", "bob"])
async def test_only_the_author_edits_not_even_the_owner_or_an_admin(chat: Chat, editor: str) -> None:
    conversation_id, ann, bob, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "mine")
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.edit.execute(
            user_id=(ann if editor == "ann" else bob).id, conversation_id=conversation_id, seq=1, body="theirs"
        )

    stored = await chat.stored_message(conversation_id, 1)
    assert stored is not None
    assert (stored.body, stored.edited_at) == ("mine", None)
    assert chat.events == []


async def test_a_deleted_message_cannot_be_edited(chat: Chat) -> None:
    conversation_id, _, _, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "mine")
    await chat.delete.execute(user_id=cat.id, conversation_id=conversation_id, seq=1)
    chat.events.clear()

    with pytest.raises(Conflict):
        await chat.edit.execute(user_id=cat.id, conversation_id=conversation_id, seq=1, body="back")

    stored = await chat.stored_message(conversation_id, 1)
    assert stored is not None
    assert (stored.body, stored.deleted) == ("", True)
    assert chat.events == []


async def test_an_edit_must_still_have_a_valid_body(chat: Chat) -> None:
    conversation_id, _, _, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "mine")

    with pytest.raises(Invalid) as caught:
        await chat.edit.execute(user_id=cat.id, conversation_id=conversation_id, seq=1, body="  ")

    assert caught.value.field == "body"
    stored = await chat.stored_message(conversation_id, 1)
    assert stored is not None
    assert stored.body == "mine"


@pytest.mark.parametrize("use_case", ["edit", "delete"])
async def test_editing_or_deleting_a_missing_seq_is_not_found(chat: Chat, use_case: str) -> None:
    conversation_id, ann, *_ = await chat.team()
    await chat.history(conversation_id, ann, 1)

    with pytest.raises(NotFound):
        if use_case == "edit":
            await chat.edit.execute(user_id=ann.id, conversation_id=conversation_id, seq=2, body="x")
        else:
            await chat.delete.execute(user_id=ann.id, conversation_id=conversation_id, seq=2)


@pytest.mark.parametrize("deleter", ["cat", "bob", "ann"])
async def test_the_author_owner_or_an_admin_tombstones_a_message(chat: Chat, deleter: str) -> None:
    conversation_id, ann, bob, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "oops")
    await chat.say(ann, conversation_id, "after")
    chat.events.clear()

    deleted = await chat.delete.execute(
        user_id={"ann": ann, "bob": bob, "cat": cat}[deleter].id, conversation_id=conversation_id, seq=1
    )

    page, _ = await chat.list_messages.execute(user_id=cat.id, conversation_id=conversation_id)
    assert [(m.seq, m.body, m.deleted) for m in page] == [(1, "", True), (2, "after", False)]
    assert page[0].edited_at is None  # a tombstone is not an edit
    assert chat.events == [MessageDeleted(message=deleted)]


async def test_deleting_twice_changes_nothing_and_announces_nothing(chat: Chat) -> None:
    conversation_id, _, _, cat, _ = await chat.team()
    await chat.say(cat, conversation_id, "oops")
    first = await chat.delete.execute(user_id=cat.id, conversation_id=conversation_id, seq=1)
    chat.events.clear()

    again = await chat.delete.execute(user_id=cat.id, conversation_id=conversation_id, seq=1)

    assert again == first
    assert chat.events == []


async def test_a_plain_member_may_not_delete_someone_elses_message(chat: Chat) -> None:
    conversation_id, ann, _, cat, _ = await chat.team()
    await chat.say(ann, conversation_id, "rules")
    chat.events.clear()

    with pytest.raises(Forbidden):
        await chat.delete.execute(user_id=cat.id, conversation_id=conversation_id, seq=1)

    stored = await chat.stored_message(conversation_id, 1)
    assert stored is not None
    assert (stored.body, stored.deleted) == ("rules", False)
    assert chat.events == []


async def test_a_tombstone_keeps_the_numbering(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()
    await chat.history(conversation_id, ann, 2)
    await chat.delete.execute(user_id=ann.id, conversation_id=conversation_id, seq=2)

    posted = await chat.say(ann, conversation_id)

    assert posted.seq == 3
