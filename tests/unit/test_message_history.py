"""Paging through a conversation's history."""

import pytest

from convocore.domain.errors import Invalid
from convocore.domain.users import User
from tests.support.wiring import Chat


async def ten_messages(chat: Chat) -> tuple[str, User]:
    conversation_id, ann, *_ = await chat.team()
    await chat.history(conversation_id, ann, 10)
    return conversation_id, ann


@pytest.mark.parametrize(
    ("before", "after", "limit", "seqs", "has_more"),
    [
        (None, None, 3, [8, 9, 10], True),
        (None, None, 10, list(range(1, 11)), False),
        (None, None, 200, list(range(1, 11)), False),
        (8, None, 3, [5, 6, 7], True),
        (4, None, 3, [1, 2, 3], False),
        (3, None, 3, [1, 2], False),
        (1, None, 3, [], False),
        (None, 0, 3, [1, 2, 3], True),
        (None, 6, 3, [7, 8, 9], True),
        (None, 7, 3, [8, 9, 10], False),
        (None, 10, 3, [], False),
        (9, 2, 3, [3, 4, 5], True),
        (6, 2, 3, [3, 4, 5], False),
    ],
)
async def test_history_pages(
    chat: Chat, before: int | None, after: int | None, limit: int, seqs: list[int], has_more: bool
) -> None:
    conversation_id, ann = await ten_messages(chat)

    page, more = await chat.list_messages.execute(
        user_id=ann.id, conversation_id=conversation_id, before=before, after=after, limit=limit
    )

    assert ([m.seq for m in page], more) == (seqs, has_more)


async def test_paging_backwards_from_the_newest_end_sees_every_message_once(chat: Chat) -> None:
    conversation_id, ann = await ten_messages(chat)
    seen: list[int] = []
    before: int | None = None

    for _ in range(10):
        page, more = await chat.list_messages.execute(
            user_id=ann.id, conversation_id=conversation_id, before=before, limit=4
        )
        seen = [m.seq for m in page] + seen
        if not more:
            break
        before = page[0].seq

    assert seen == list(range(1, 11))


async def test_paging_forwards_from_the_start_sees_every_message_once(chat: Chat) -> None:
    conversation_id, ann = await ten_messages(chat)
    seen: list[int] = []
    after = 0

    for _ in range(10):
        page, more = await chat.list_messages.execute(
            user_id=ann.id, conversation_id=conversation_id, after=after, limit=4
        )
        seen += [m.seq for m in page]
        if not more:
            break
        after = page[-1].seq

    assert seen == list(range(1, 11))


@pytest.mark.parametrize(
    ("field", "value"), [("limit", 0), ("limit", 201), ("limit", -1), ("before", -1), ("after", -1)]
)
async def test_paging_arguments_out_of_bounds_are_invalid(chat: Chat, field: str, value: int) -> None:
    conversation_id, ann = await ten_messages(chat)

    with pytest.raises(Invalid) as caught:
        await chat.list_messages.execute(user_id=ann.id, conversation_id=conversation_id, **{field: value})

    assert caught.value.field == field
