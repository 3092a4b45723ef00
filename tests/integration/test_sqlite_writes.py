"""What a post writes on SQLite: the message, with the ``messages_posted`` trigger doing its
bookkeeping (no UPDATE of its own), and, for any other change, only the columns it changes.
(What a post costs at a long history is the benchmark suite's "post at depth".)"""

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql.sqlite import SqliteStorage
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import MarkRead, StartConversation, UpdateConversation
from convocore.application.messages import PostMessage
from convocore.domain import messages
from convocore.domain.conversations import Kind
from tests.support.storage import schema_storage


@dataclass
class Chat:
    raw: sqlite3.Connection
    uow: SqliteStorage
    owner: str
    other: str
    conversation: str


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    async with schema_storage(f"sqlite:///{tmp_path / 'cost.db'}") as storage:
        assert isinstance(storage, SqliteStorage)
        clock, ids = SystemClock(), UuidGenerator()
        register = RegisterUser(
            uow=storage, hasher=Argon2PasswordHasher(time_cost=1, memory_cost=1024), ids=ids, clock=clock
        )
        owner = await register.execute(username="owner", password="correct horse")
        other = await register.execute(username="other", password="correct horse")
        start = StartConversation(uow=storage, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title="cost")
        raw = storage.sqlite_connection()  # the one the units of work run on
        yield Chat(raw=raw, uow=storage, owner=owner.id, other=other.id, conversation=detail.conversation.id)


def _traced(chat: Chat) -> list[str]:
    """Every statement SQLite runs on the units' connection from now on (until the trace is reset)."""
    statements: list[str] = []
    chat.raw.set_trace_callback(statements.append)
    return statements


def _rows(chat: Chat) -> tuple[tuple[int, str], dict[str, int]]:
    """The conversation's (last_seq, last_activity_at) and each member's read marker, as stored."""
    conversation = chat.raw.execute(
        "SELECT last_seq, last_activity_at FROM conversations WHERE id = ?", (chat.conversation,)
    ).fetchone()
    reads = dict(
        chat.raw.execute(
            "SELECT user_id, last_read_seq FROM members WHERE conversation_id = ?", (chat.conversation,)
        ).fetchall()
    )
    return (conversation[0], conversation[1]), reads


async def test_a_post_runs_no_update_the_trigger_moves_the_conversation_and_the_senders_marker(chat: Chat) -> None:
    post = PostMessage(uow=chat.uow, broadcaster=InProcessBroadcaster(), ids=UuidGenerator(), clock=SystemClock())
    await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body="first")  # the link is open
    statements = _traced(chat)
    try:
        await post.execute(user_id=chat.other, conversation_id=chat.conversation, body="hello")
    finally:
        chat.raw.set_trace_callback(None)
    assert not [s for s in statements if s.startswith("UPDATE")], statements
    (last_seq, activity), reads = _rows(chat)
    (created,) = chat.raw.execute(
        "SELECT created_at FROM messages WHERE conversation_id = ? AND seq = 2", (chat.conversation,)
    ).fetchone()
    assert (last_seq, activity) == (2, created)
    assert reads == {chat.owner: 1, chat.other: 2}  # the sender's marker only
    async with chat.uow() as uow:  # and read back as the domain left them
        conversation, member = await uow.conversations.get_with_member(chat.conversation, chat.other)
    assert conversation is not None and member is not None
    assert (conversation.last_seq, member.last_read_seq) == (2, 2)


async def test_a_rename_and_a_read_marker_write_only_the_columns_they_change(chat: Chat) -> None:
    bus = InProcessBroadcaster()
    post = PostMessage(uow=chat.uow, broadcaster=bus, ids=UuidGenerator(), clock=SystemClock())
    await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body="unread by the other")
    rename = UpdateConversation(uow=chat.uow, broadcaster=bus)
    mark = MarkRead(uow=chat.uow, broadcaster=bus)
    statements = _traced(chat)
    try:
        await rename.execute(user_id=chat.owner, conversation_id=chat.conversation, title="renamed")
        await mark.execute(user_id=chat.other, conversation_id=chat.conversation, seq=1)
    finally:
        chat.raw.set_trace_callback(None)
    updates = [s.split(" WHERE ")[0] for s in statements if s.startswith("UPDATE")]
    assert updates == ["UPDATE conversations SET title='renamed'", "UPDATE members SET last_read_seq=1"], statements
    (last_seq, _), reads = _rows(chat)
    assert last_seq == reads[chat.other] == reads[chat.owner] == 1


async def test_after_the_trigger_a_save_writes_what_differs_from_what_it_wrote(chat: Chat) -> None:
    """A unit of work that stores a message and changes more of the conversation than posting
    does writes that, and only that: what the trigger wrote counts as written."""
    statements: list[str] = []
    async with chat.uow() as uow:
        conversation, sender = await uow.conversations.get_with_member(chat.conversation, chat.other, for_update=True)
        assert conversation is not None and sender is not None
        message = messages.post(
            conversation,
            sender=sender,
            message_id="m-1",
            body="hello",
            client_id=None,
            reply_to=None,
            now=datetime.now(UTC),
        )
        conversation.title = "renamed as it posts"
        sender.last_read_seq = 0  # not where posting put it
        chat.raw.set_trace_callback(statements.append)
        try:
            assert await uow.messages.add(message)
            await uow.conversations.save(conversation)
            await uow.members.save(sender)
        finally:
            chat.raw.set_trace_callback(None)
        await uow.commit()
    updates = [s.split(" WHERE ")[0] for s in statements if s.startswith("UPDATE")]
    assert updates == ["UPDATE conversations SET title='renamed as it posts'", "UPDATE members SET last_read_seq=0"]
    async with chat.uow() as uow:
        stored, member = await uow.conversations.get_with_member(chat.conversation, chat.other)
    assert stored is not None and member is not None
    assert (stored.title, stored.last_seq, stored.last_activity_at, member.last_read_seq) == (
        "renamed as it posts",
        1,
        message.created_at,
        0,
    )


async def test_a_message_older_than_the_conversations_last_moves_neither_row(chat: Chat) -> None:
    post = PostMessage(uow=chat.uow, broadcaster=InProcessBroadcaster(), ids=UuidGenerator(), clock=SystemClock())
    for body in ("one", "two", "three"):
        await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body=body)
    chat.raw.execute("DELETE FROM messages WHERE conversation_id = ? AND seq = 2", (chat.conversation,))
    before = _rows(chat)
    chat.raw.execute(  # an import putting the missing message back
        "INSERT INTO messages VALUES (?, 2, 'imported', ?, 'two', NULL, NULL, '2020-01-01 00:00:00.000000', NULL, 0)",
        (chat.conversation, chat.other),
    )
    assert _rows(chat) == before
    assert before[0][0] == 3


async def test_saving_a_row_as_it_was_read_writes_nothing_and_a_removed_member_saved_again_is_back(
    chat: Chat,
) -> None:
    statements: list[str] = []
    async with chat.uow() as uow:
        member = await uow.members.get(chat.conversation, chat.other)
        conversation = await uow.conversations.get(chat.conversation)
        assert member is not None and conversation is not None
        chat.raw.set_trace_callback(statements.append)
        try:
            await uow.members.save(member)
            await uow.conversations.save(conversation)
            await uow.members.remove(chat.conversation, chat.other)
            await uow.members.save(member)  # the row is gone: save puts it back, whole
        finally:
            chat.raw.set_trace_callback(None)
        await uow.commit()
    kinds = [s.split()[0] for s in statements]
    assert kinds == ["DELETE", "UPDATE", "INSERT"], statements
    async with chat.uow() as uow:
        assert await uow.members.get(chat.conversation, chat.other) == member
