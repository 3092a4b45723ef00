"""The ``messages_posted`` trigger on SQLAlchemy's unit of work: PostgreSQL, and SQLite in
memory. Once the factory has found the trigger, a post's INSERT moves the conversation and the
sender's read marker and its saves write nothing; before that, the saves write both rows
themselves. (A SQLite file's own connection: test_sqlite_post_cost.py.)"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql import migrate
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, create_engine
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import PostMessage
from convocore.domain.conversations import Kind
from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS, Api


@dataclass
class Chat:
    engine: AsyncEngine
    uow: SqlAlchemyUnitOfWorkFactory
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
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
        clock, ids = SystemClock(), UuidGenerator()
        hasher = Argon2PasswordHasher(time_cost=1, memory_cost=1024)
        register = RegisterUser(uow=uow, hasher=hasher, ids=ids, clock=clock)
        owner = await register.execute(username="owner", password="correct horse")
        other = await register.execute(username="other", password="correct horse")
        start = StartConversation(uow=uow, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title="trigger")
        post = PostMessage(uow=uow, broadcaster=InProcessBroadcaster(), ids=ids, clock=clock)
        yield Chat(engine, uow, post, owner.id, other.id, detail.conversation.id)
    finally:
        await engine.dispose()


async def _updates_of_a_post(chat: Chat, sender: str) -> list[str]:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(chat.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await chat.post.execute(user_id=sender, conversation_id=chat.conversation, body="hello")
    finally:
        event.remove(chat.engine.sync_engine, "before_cursor_execute", seen)
    return [s.split(" WHERE ")[0] for s in statements if s.lstrip().upper().startswith("UPDATE")]


async def _state(chat: Chat) -> tuple[int, int, int]:
    """The conversation's last seq, and the owner's and the other's read markers, as stored."""
    async with chat.uow() as uow:
        conversation = await uow.conversations.get(chat.conversation)
        owner = await uow.members.get(chat.conversation, chat.owner)
        other = await uow.members.get(chat.conversation, chat.other)
    assert conversation is not None and owner is not None and other is not None
    return conversation.last_seq, owner.last_read_seq, other.last_read_seq


async def test_once_found_the_trigger_stores_what_a_post_changes_and_the_saves_write_nothing(chat: Chat) -> None:
    await chat.uow.find_triggers()
    assert await _updates_of_a_post(chat, chat.other) == []
    assert await _state(chat) == (1, 0, 1)
    assert await _updates_of_a_post(chat, chat.owner) == []
    assert await _state(chat) == (2, 2, 1)
    async with chat.uow() as uow:
        page = await uow.messages.page(chat.conversation, before=None, after=None, limit=10)
        conversation = await uow.conversations.get(chat.conversation)
    assert conversation is not None and conversation.last_activity_at == page[-1].created_at


async def test_until_it_is_found_the_saves_write_both_rows(chat: Chat) -> None:
    updates = await _updates_of_a_post(chat, chat.other)
    assert sorted(u.split()[1] for u in updates) == ["conversations", "members"], updates
    assert await _state(chat) == (1, 0, 1)


async def test_the_app_finds_the_trigger_as_it_starts(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, migrate=True, **FAST_HASHING, **GENEROUS_LIMITS))
    async with AsyncTestClient(app) as client:
        api = Api(client)
        owner, other = await api.person("owner"), await api.person("other")
        conversation = await api.group(owner, other)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        engine = app.state.container.engine().sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            sent = await api.send(other, conversation, "hello")
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert sent["seq"] == 1
        assert any(s.lstrip().upper().startswith("INSERT INTO MESSAGES") for s in statements), statements
        assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")], statements
        r = await client.get("/api/conversations/", headers=other.auth)
        assert r.status_code == 200, r.text
        [entry] = r.json()["items"]
        assert (entry["last_seq"], entry["last_read_seq"], entry["unread_count"]) == (1, 1, 0), entry
