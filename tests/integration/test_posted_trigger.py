"""The ``messages_posted`` trigger, on PostgreSQL and on SQLite (in memory; a file's statements
seen one by one: test_sqlite_post_cost.py). A post's INSERT moves its conversation's last seq and
activity time and its sender's read marker, and nothing else does: the post runs no statement
beyond reading the conversation and storing the message (counted by the storage's statement
timer), a save in the same unit writes only what differs from what the trigger wrote, and a
message older than the conversation's last moves neither row."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, text

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql import migrate
from convocore.adapters.sql.postgres import PostgresStorage
from convocore.adapters.sql.sqlite import SqliteStorage
from convocore.adapters.sql.storage import SqlStorage, open_storage
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import PostMessage
from convocore.domain import messages
from convocore.domain.conversations import Kind
from convocore.domain.messages import Message
from convocore.entrypoints.app import create_app
from convocore.entrypoints.container import build_container
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS, Api

# What a post runs: the conversation read (locked) with the sender's membership, and the INSERT.
POST_STATEMENTS = 2


class Statements:
    """How many statements the storage's units of work ran since the last ``take``."""

    def __init__(self, storage: SqlStorage) -> None:
        self._seen: list[float] = []
        storage.time_statements(self._seen.append)

    def take(self) -> int:
        count = len(self._seen)
        self._seen.clear()
        return count


@dataclass
class Chat:
    storage: SqlStorage
    statements: Statements
    post: PostMessage
    owner: str
    other: str
    conversation: str


@pytest.fixture(params=["postgres", "sqlite-memory"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_database"))
    return "sqlite+aiosqlite:///:memory:"


@pytest.fixture
async def chat(database_url: str) -> AsyncIterator[Chat]:
    storage = open_storage(database_url)
    try:
        await migrate.upgrade(storage)
        clock, ids = SystemClock(), UuidGenerator()
        hasher = Argon2PasswordHasher(time_cost=1, memory_cost=1024)
        register = RegisterUser(uow=storage, hasher=hasher, ids=ids, clock=clock)
        owner = await register.execute(username="owner", password="correct horse")
        other = await register.execute(username="other", password="correct horse")
        start = StartConversation(uow=storage, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title="trigger")
        post = PostMessage(uow=storage, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        yield Chat(storage, Statements(storage), post, owner.id, other.id, detail.conversation.id)
    finally:
        await storage.dispose()


async def _statements_of_a_post(chat: Chat, sender: str, body: str = "hello") -> int:
    chat.statements.take()
    await chat.post.execute(user_id=sender, conversation_id=chat.conversation, body=body)
    return chat.statements.take()


async def _state(chat: Chat) -> tuple[int, datetime, int, int]:
    """The conversation's last seq and activity time, and the owner's and the other's read
    markers, as stored."""
    async with chat.storage() as uow:
        conversation = await uow.conversations.get(chat.conversation)
        owner = await uow.members.get(chat.conversation, chat.owner)
        other = await uow.members.get(chat.conversation, chat.other)
    assert conversation is not None and owner is not None and other is not None
    return conversation.last_seq, conversation.last_activity_at, owner.last_read_seq, other.last_read_seq


async def _created_at(chat: Chat, seq: int) -> datetime:
    async with chat.storage() as uow:
        message = await uow.messages.get(chat.conversation, seq)
    assert message is not None
    return message.created_at


async def test_the_trigger_stores_what_a_post_changes_and_the_saves_write_nothing(chat: Chat) -> None:
    assert await _statements_of_a_post(chat, chat.other) == POST_STATEMENTS
    assert await _state(chat) == (1, await _created_at(chat, 1), 0, 1)  # the sender's marker only
    assert await _statements_of_a_post(chat, chat.owner) == POST_STATEMENTS
    assert await _state(chat) == (2, await _created_at(chat, 2), 2, 1)
    async with chat.storage() as uow:
        page = await uow.messages.page(chat.conversation, before=None, after=None, limit=10)
    assert [m.seq for m in page] == [1, 2]


async def test_a_save_after_a_post_writes_only_what_differs_from_what_the_trigger_wrote(chat: Chat) -> None:
    async with chat.storage() as uow:
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
        assert await uow.messages.add(message)
        chat.statements.take()
        await uow.conversations.save(conversation)  # as posting left it: the trigger wrote that
        await uow.members.save(sender)
        assert chat.statements.take() == 0
        conversation.title = "renamed as it posts"
        sender.last_read_seq = 0  # not where posting put it
        await uow.conversations.save(conversation)
        await uow.members.save(sender)
        assert chat.statements.take() == 2  # one UPDATE each
        await uow.commit()
    async with chat.storage() as uow:
        stored, member = await uow.conversations.get_with_member(chat.conversation, chat.other)
    assert stored is not None and member is not None
    assert (stored.title, stored.last_seq, stored.last_activity_at, member.last_read_seq) == (
        "renamed as it posts",
        1,
        message.created_at,
        0,
    )


async def test_a_message_older_than_the_conversations_last_moves_neither_row(chat: Chat) -> None:
    for body in ("one", "two", "three"):
        await chat.post.execute(user_id=chat.owner, conversation_id=chat.conversation, body=body)

    def delete_the_second(connection: Connection) -> None:
        connection.execute(
            text("DELETE FROM messages WHERE conversation_id = :c AND seq = 2"), {"c": chat.conversation}
        )

    await chat.storage.run_sync(delete_the_second)
    before = await _state(chat)
    assert before[0] == 3
    imported = Message(  # an import putting the missing message back, the other's
        id="imported",
        conversation_id=chat.conversation,
        seq=2,
        sender_id=chat.other,
        body="two",
        client_id=None,
        reply_to=None,
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    async with chat.storage() as uow:
        conversation, sender = await uow.conversations.get_with_member(chat.conversation, chat.other, for_update=True)
        assert conversation is not None and sender is not None
        assert await uow.messages.add(imported)
        chat.statements.take()
        await uow.conversations.save(conversation)  # as read: the trigger moved nothing
        await uow.members.save(sender)
        assert chat.statements.take() == 0
        await uow.commit()
    assert await _state(chat) == before
    async with chat.storage() as uow:
        stored = await uow.messages.get(chat.conversation, 2)
    assert stored is not None and stored.id == "imported"


async def test_the_apps_posts_leave_their_bookkeeping_to_the_trigger(database_url: str) -> None:
    container = build_container(Settings(database_url=database_url, migrate=True, **FAST_HASHING, **GENEROUS_LIMITS))
    storage = container.uow()
    assert isinstance(storage, SqliteStorage | PostgresStorage)
    async with AsyncTestClient(create_app(container=container)) as client:
        api = Api(client)
        owner, other = await api.person("owner"), await api.person("other")
        conversation = await api.group(owner, other)
        statements = Statements(storage)
        assert (await api.send(other, conversation, "hello"))["seq"] == 1  # its token read, and kept
        statements.take()
        assert (await api.send(other, conversation, "again"))["seq"] == 2
        assert statements.take() == POST_STATEMENTS  # no save wrote either row
        r = await client.get("/api/conversations/", headers=other.auth)
        assert r.status_code == 200, r.text
        [entry] = r.json()["items"]
        assert (entry["last_seq"], entry["last_read_seq"], entry["unread_count"]) == (2, 2, 0), entry
