"""Posting: sequence numbers, idempotency and validation."""

import asyncio

import pytest

from convocore.domain.errors import Invalid, NotFound
from convocore.domain.events import MessageCreated
from tests.support.wiring import Chat


async def test_posting_stores_the_message_and_announces_it(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()

    posted = await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="hello")

    assert posted.created is True
    assert (posted.message.seq, posted.message.sender_id, posted.message.body) == (1, ann.id, "hello")
    assert await chat.stored_message(conversation_id, 1) == posted.message
    assert chat.events == [MessageCreated(message=posted.message)]


async def test_sequence_numbers_count_up_per_conversation_without_gaps(chat: Chat) -> None:
    conversation_id, ann, bob, cat, _ = await chat.team()
    other_id = await chat.direct(ann, bob)

    seqs = [(await chat.say(who, conversation_id)).seq for who in (ann, bob, cat, ann)]
    other_seqs = [(await chat.say(ann, other_id)).seq for _ in range(2)]

    assert seqs == [1, 2, 3, 4]
    assert other_seqs == [1, 2]
    conversation = await chat.stored_conversation(conversation_id)
    assert conversation is not None
    assert conversation.last_seq == 4


async def test_fifty_concurrent_posts_take_fifty_consecutive_seqs(chat: Chat) -> None:
    conversation_id, ann, bob, cat, _ = await chat.team()
    senders = [ann, bob, cat] * 17

    posted = await asyncio.gather(
        *(
            chat.post.execute(user_id=who.id, conversation_id=conversation_id, body=f"m{i}")
            for i, who in enumerate(senders[:50])
        )
    )

    assert sorted(p.message.seq for p in posted) == list(range(1, 51))
    page, _ = await chat.list_messages.execute(user_id=ann.id, conversation_id=conversation_id, limit=200)
    assert [m.seq for m in page] == list(range(1, 51))
    assert {m.body for m in page} == {f"m{i}" for i in range(50)}
    assert len(chat.events_of(MessageCreated)) == 50


async def test_a_repeated_client_id_returns_the_original_and_announces_nothing(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()
    first = await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="once", client_id="c-1")
    chat.events.clear()

    again = await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="twice?", client_id="c-1")

    assert again.created is False
    assert again.message == first.message
    assert chat.events == []
    page, _ = await chat.list_messages.execute(user_id=ann.id, conversation_id=conversation_id)
    assert [m.body for m in page] == ["once"]


async def test_a_retry_is_answered_with_its_original_even_when_it_would_not_be_valid_now(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()
    first = await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="once", client_id="c-1")

    again = await chat.post.execute(
        user_id=ann.id, conversation_id=conversation_id, body="twice?", client_id="c-1", reply_to=99
    )
    with pytest.raises(Invalid) as raised:
        await chat.post.execute(
            user_id=ann.id, conversation_id=conversation_id, body="new", client_id="c-2", reply_to=99
        )

    assert (again.created, again.message) == (False, first.message)
    assert raised.value.field == "reply_to"
    page, _ = await chat.list_messages.execute(user_id=ann.id, conversation_id=conversation_id)
    assert [m.seq for m in page] == [1]


async def test_concurrent_retries_with_one_client_id_post_once(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()

    posted = await asyncio.gather(
        *(
            chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="x", client_id="c-1")
            for _ in range(5)
        )
    )

    assert sorted(p.created for p in posted) == [False, False, False, False, True]
    assert {p.message.seq for p in posted} == {1}
    assert len(chat.events_of(MessageCreated)) == 1


async def test_client_ids_are_scoped_to_sender_and_conversation(chat: Chat) -> None:
    conversation_id, ann, bob, _, _ = await chat.team()
    other_id = await chat.direct(ann, bob)
    await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="a", client_id="c-1")

    by_other_sender = await chat.post.execute(
        user_id=bob.id, conversation_id=conversation_id, body="b", client_id="c-1"
    )
    elsewhere = await chat.post.execute(user_id=ann.id, conversation_id=other_id, body="c", client_id="c-1")

    assert (by_other_sender.created, by_other_sender.message.seq) == (True, 2)
    assert (elsewhere.created, elsewhere.message.seq) == (True, 1)


@pytest.mark.parametrize("body", ["", "   ", "\n\t", "x" * 4001])
async def test_a_body_must_have_text_and_at_most_4000_characters(chat: Chat, body: str) -> None:
    conversation_id, ann, *_ = await chat.team()

    with pytest.raises(Invalid) as caught:
        await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body=body)

    assert caught.value.field == "body"
    assert await chat.stored_message(conversation_id, 1) is None
    assert chat.events == []


async def test_a_body_of_exactly_4000_characters_is_posted(chat: Chat) -> None:
    conversation_id, ann, *_ = await chat.team()

    posted = await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="x" * 4000)

    assert len(posted.message.body) == 4000


@pytest.mark.parametrize("client_id", ["", "x" * 65])
async def test_a_client_id_must_be_1_to_64_characters(chat: Chat, client_id: str) -> None:
    conversation_id, ann, *_ = await chat.team()

    with pytest.raises(Invalid) as caught:
        await chat.post.execute(user_id=ann.id, conversation_id=conversation_id, body="hi", client_id=client_id)

    assert caught.value.field == "client_id"


async def test_a_reply_points_at_an_earlier_message(chat: Chat) -> None:
    conversation_id, ann, bob, *_ = await chat.team()
    await chat.history(conversation_id, ann, 2)

    posted = await chat.post.execute(user_id=bob.id, conversation_id=conversation_id, body="re", reply_to=2)

    assert (posted.message.seq, posted.message.reply_to) == (3, 2)


@pytest.mark.parametrize("reply_to", [0, 3, -1])
async def test_a_reply_to_a_seq_that_does_not_exist_is_invalid(chat: Chat, reply_to: int) -> None:
    conversation_id, ann, bob, *_ = await chat.team()
    await chat.history(conversation_id, ann, 2)

    with pytest.raises(Invalid) as caught:
        await chat.post.execute(user_id=bob.id, conversation_id=conversation_id, body="re", reply_to=reply_to)

    assert caught.value.field == "reply_to"
    assert await chat.stored_message(conversation_id, 3) is None
    assert chat.events == []


async def test_a_non_member_cannot_post_or_read(chat: Chat) -> None:
    conversation_id, ann, _, _, dan = await chat.team()
    await chat.history(conversation_id, ann, 1)

    with pytest.raises(NotFound):
        await chat.post.execute(user_id=dan.id, conversation_id=conversation_id, body="let me in")
    with pytest.raises(NotFound):
        await chat.list_messages.execute(user_id=dan.id, conversation_id=conversation_id)

    assert await chat.stored_message(conversation_id, 2) is None
    assert chat.events == []


async def test_the_senders_read_marker_follows_their_own_post(chat: Chat) -> None:
    conversation_id, ann, bob, *_ = await chat.team()
    await chat.history(conversation_id, ann, 3)

    await chat.say(bob, conversation_id)

    bob_member = await chat.stored_member(conversation_id, bob.id)
    ann_member = await chat.stored_member(conversation_id, ann.id)
    assert bob_member is not None
    assert ann_member is not None
    assert (bob_member.last_read_seq, ann_member.last_read_seq) == (4, 3)


async def test_posting_moves_the_conversation_to_the_top_of_the_inbox(chat: Chat) -> None:
    conversation_id, ann, bob, *_ = await chat.team()
    other_id = await chat.direct(ann, bob)

    await chat.say(bob, conversation_id)

    entries, _ = await chat.inbox.execute(user_id=ann.id, before=None, limit=10)
    assert [e.conversation.id for e in entries] == [conversation_id, other_id]
