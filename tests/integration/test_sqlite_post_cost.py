"""What a post costs SQLite: no more at a long history than at none, and only the columns it
changes written.

Counted in SQLite's virtual-machine instructions (a progress handler called on every one), which
are the same on any machine, busy or not; no timing is asserted. Saving a conversation used to
set its primary key to itself, which with foreign keys on made SQLite visit every message that
points at the conversation: that one UPDATE cost ~6 us in an empty conversation and ~5 ms at
100,000 messages.
"""

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql import tables
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, create_engine, create_schema
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation, UpdateConversation
from convocore.application.messages import EditMessage, PostMessage
from convocore.domain import messages
from convocore.domain.conversations import Kind

HISTORY = 5_000


@dataclass
class Chat:
    raw: sqlite3.Connection
    uow: SqlAlchemyUnitOfWorkFactory
    owner: str
    other: str
    conversation: str


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    engine = create_engine(f"sqlite:///{tmp_path / 'cost.db'}")
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    try:
        await create_schema(engine)
        await uow.find_triggers()  # as the app does once the schema is in place
        clock, ids = SystemClock(), UuidGenerator()
        register = RegisterUser(
            uow=uow, hasher=Argon2PasswordHasher(time_cost=1, memory_cost=1024), ids=ids, clock=clock
        )
        owner = await register.execute(username="owner", password="correct horse")
        other = await register.execute(username="other", password="correct horse")
        start = StartConversation(uow=uow, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title="cost")
        raw = uow.sqlite_connection()  # the one the units of work run on
        assert raw is not None
        yield Chat(raw=raw, uow=uow, owner=owner.id, other=other.id, conversation=detail.conversation.id)
    finally:
        uow.close()
        await engine.dispose()


def _grow_history(chat: Chat, count: int) -> None:
    """``count`` more messages, written straight into the file as a long-lived chat would have them."""
    (last_seq,) = chat.raw.execute("SELECT last_seq FROM conversations WHERE id = ?", (chat.conversation,)).fetchone()
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    rows = [
        (chat.conversation, seq, f"bulk-{seq}", chat.other, "x" * 100, None, None, now, None, False)
        for seq in range(last_seq + 1, last_seq + count + 1)
    ]
    chat.raw.execute("BEGIN IMMEDIATE")
    chat.raw.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    chat.raw.execute("UPDATE conversations SET last_seq = ? WHERE id = ?", (last_seq + count, chat.conversation))
    chat.raw.execute("COMMIT")


class _Steps:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.count, self._raw = 0, raw

    def __enter__(self) -> "_Steps":
        self._raw.set_progress_handler(self._step, 1)
        return self

    def __exit__(self, *_: object) -> None:
        self._raw.set_progress_handler(None, 1)

    def _step(self) -> int:
        self.count += 1
        return 0  # go on


async def _post_steps(chat: Chat, post: PostMessage) -> int:
    await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body="warm")  # plans compiled
    with _Steps(chat.raw) as steps:
        await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body="counted")
    return steps.count


async def test_a_post_costs_the_same_at_5000_messages_of_history_as_at_none(chat: Chat) -> None:
    post = PostMessage(uow=chat.uow, broadcaster=InProcessBroadcaster(), ids=UuidGenerator(), clock=SystemClock())
    fresh = await _post_steps(chat, post)
    _grow_history(chat, HISTORY)
    deep = await _post_steps(chat, post)
    # B-tree descents are a few steps deeper in a bigger table; a walk over the history is
    # thousands of steps (the old save took over 30 per message).
    assert deep < fresh * 1.5 + 50, (fresh, deep)
    (count,) = chat.raw.execute(
        "SELECT count(*) FROM messages WHERE conversation_id = ?", (chat.conversation,)
    ).fetchone()
    assert count == HISTORY + 4  # and the posts were stored


async def test_renaming_and_editing_cost_the_same_at_5000_messages_of_history(chat: Chat) -> None:
    clock, bus = SystemClock(), InProcessBroadcaster()
    rename = UpdateConversation(uow=chat.uow, broadcaster=bus)
    edit = EditMessage(uow=chat.uow, broadcaster=bus, clock=clock)
    post = PostMessage(uow=chat.uow, broadcaster=bus, ids=UuidGenerator(), clock=clock)
    mine = (await post.execute(user_id=chat.owner, conversation_id=chat.conversation, body="mine")).message

    async def steps(title: str) -> int:
        await rename.execute(user_id=chat.owner, conversation_id=chat.conversation, title=title + " warm")
        await edit.execute(user_id=chat.owner, conversation_id=chat.conversation, seq=mine.seq, body=title + " warm")
        with _Steps(chat.raw) as counted:
            await rename.execute(user_id=chat.owner, conversation_id=chat.conversation, title=title)
            await edit.execute(user_id=chat.owner, conversation_id=chat.conversation, seq=mine.seq, body=title)
        return counted.count

    fresh = await steps("before")
    _grow_history(chat, HISTORY)
    deep = await steps("after")
    assert deep < fresh * 1.5 + 50, (fresh, deep)
    title, body = chat.raw.execute(
        "SELECT c.title, m.body FROM conversations c JOIN messages m ON m.conversation_id = c.id "
        "WHERE c.id = ? AND m.seq = ?",
        (chat.conversation, mine.seq),
    ).fetchone()
    assert (title, body) == ("after", "after")


def _traced(chat: Chat) -> list[str]:
    statements: list[str] = []
    chat.raw.set_trace_callback(statements.append)
    return statements


def _rows(chat: Chat) -> tuple[tuple[int, str], dict[str, int]]:
    """The conversation's (last_seq, last_activity_at) as stored, and each member's read marker."""
    conversation = chat.raw.execute(
        "SELECT last_seq, last_activity_at FROM conversations WHERE id = ?", (chat.conversation,)
    ).fetchone()
    reads = chat.raw.execute(
        "SELECT user_id, last_read_seq FROM members WHERE conversation_id = ?", (chat.conversation,)
    ).fetchall()
    return conversation, dict(reads)


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


async def test_without_the_trigger_a_post_writes_only_the_columns_it_changes(chat: Chat) -> None:
    chat.raw.execute(f"DROP TRIGGER {tables.POSTED_TRIGGER}")
    await chat.uow.find_triggers()
    post = PostMessage(uow=chat.uow, broadcaster=InProcessBroadcaster(), ids=UuidGenerator(), clock=SystemClock())
    statements = _traced(chat)
    try:
        await post.execute(user_id=chat.other, conversation_id=chat.conversation, body="hello")
    finally:
        chat.raw.set_trace_callback(None)
    updates = sorted(s.split(" WHERE ")[0] for s in statements if s.startswith("UPDATE"))
    assert len(updates) == 2, statements
    conversation_set, member_set = (u.split(" SET ", 1)[1] for u in updates)
    assert [a.split("=")[0] for a in conversation_set.split(", ")] == ["last_activity_at", "last_seq"]
    assert [a.split("=")[0] for a in member_set.split(", ")] == ["last_read_seq"]
    (last_seq, _), reads = _rows(chat)
    assert last_seq == reads[chat.other] == 1


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
