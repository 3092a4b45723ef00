"""A post's work in SQLite does not grow with the conversation's history.

Counted in SQLite's virtual-machine instructions (a progress handler called on every one), which
are the same on any machine, busy or not; no timing is asserted. Saving a conversation used to
set its primary key to itself, which with foreign keys on made SQLite visit every message that
points at the conversation: a post cost ~6 us at an empty conversation and ~5 ms at 100,000
messages.
"""

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, create_engine, create_schema
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation, UpdateConversation
from convocore.application.messages import EditMessage, PostMessage
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
    try:
        await create_schema(engine)
        uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
        clock, ids = SystemClock(), UuidGenerator()
        register = RegisterUser(
            uow=uow, hasher=Argon2PasswordHasher(time_cost=1, memory_cost=1024), ids=ids, clock=clock
        )
        owner = await register.execute(username="owner", password="correct horse")
        other = await register.execute(username="other", password="correct horse")
        start = StartConversation(uow=uow, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title="cost")
        async with engine.connect() as connection:  # the engine's one connection, never recycled
            raw = (await connection.get_raw_connection()).driver_connection._connection
        yield Chat(raw=raw, uow=uow, owner=owner.id, other=other.id, conversation=detail.conversation.id)
    finally:
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
