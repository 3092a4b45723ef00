"""PostgreSQL's prebuilt statements on asyncpg directly (``pg_fast``): they bypass SQLAlchemy's
execution yet share the unit of work's transaction with the statements that still take it,
and fail as SQLAlchemy's path did (a clash a ``Conflict``, a lost connection or a schema
changed under a prepared statement ``Unavailable``, each followed by a unit that works)."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import InternalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql import migrate
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, create_engine
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import ListMessages, PostMessage
from convocore.domain.conversations import Kind
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.users import User
from tests.integration.conftest import Backends


@pytest.fixture
async def engine(postgres_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_database)
    try:
        await migrate.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def user(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name, password_hash="x", created_at=datetime.now(UTC))


class SqlAlchemyCalls:
    """Counts statements that went through SQLAlchemy's ``AsyncConnection.execute``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = AsyncConnection.execute

        async def counted(connection: AsyncConnection, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(connection, *args, **kwargs)

        monkeypatch.setattr(AsyncConnection, "execute", counted)


async def test_prebuilt_statements_skip_sqlalchemys_execution(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    calls = SqlAlchemyCalls(monkeypatch)
    async with uow() as unit:
        await unit.users.add(user("ann"))
        await unit.commit()
    async with uow() as unit:
        found = await unit.users.get_by_username("ANN")  # read back by its key
    assert found is not None and found.id == "id-ann" and found.created_at.tzinfo is not None
    assert calls.count == 0
    async with uow() as unit:  # an expanding IN list: SQLAlchemy's path, as before
        assert list(await unit.users.get_many(["id-ann"])) == ["id-ann"]
    assert calls.count == 1


async def test_both_paths_share_the_units_transaction(engine: AsyncEngine) -> None:
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with uow() as unit:
        await unit.users.add(user("bob"))  # on asyncpg
        assert list(await unit.users.get_many(["id-bob"])) == ["id-bob"]  # through SQLAlchemy: sees it
        # left without commit
    async with uow() as unit:
        assert await unit.users.get("id-bob") is None
        assert await unit.users.get_many(["id-bob"]) == {}
    async with uow() as unit:
        assert await unit.users.get_many(["id-bob"]) == {}  # SQLAlchemy's statement begins it here
        await unit.users.add(user("bob"))
        await unit.commit()
        await unit.users.add(user("cat"))  # after a commit: a new transaction, begun on asyncpg
        await unit.commit()
    async with uow() as unit:
        assert sorted(await unit.users.get_many(["id-bob", "id-cat"])) == ["id-bob", "id-cat"]


async def test_a_clash_is_a_conflict_and_undoes_the_unit(engine: AsyncEngine) -> None:
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with uow() as unit:
        await unit.users.add(user("dan"))
        await unit.commit()
    with pytest.raises(Conflict) as raised:
        async with uow() as unit:
            await unit.users.add(user("eve"))
            await unit.users.add(dataclasses.replace(user("DAN"), id="id-dan2"))  # the same name, cased otherwise
    assert raised.value.field == "username"
    async with uow() as unit:
        assert await unit.users.get("id-eve") is None  # the unit's earlier insert went with it


async def test_a_lost_connection_is_unavailable_and_is_not_reused(
    engine: AsyncEngine, postgres_backends: Backends
) -> None:
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with uow() as unit:
        await unit.users.add(user("fay"))
        await unit.commit()
        pid = await unit._pooled._pg.driver.fetchval("SELECT pg_backend_pid()")  # type: ignore[union-attr]
    await postgres_backends.terminate(pid)
    with pytest.raises(Unavailable):  # used a moment ago, so not pinged: its first statement fails
        async with uow() as unit:
            await unit.users.get("id-fay")
    async with uow() as unit:  # invalidated, not handed out again
        found = await unit.users.get("id-fay")
    assert found is not None


async def test_a_statement_the_schema_changed_under_is_unavailable_once(engine: AsyncEngine) -> None:
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with uow() as unit:
        await unit.users.add(user("gus"))
        await unit.commit()
        assert await unit.users.get("id-gus") is not None  # prepared on this connection
    async with engine.begin() as connection:
        await connection.exec_driver_sql("ALTER TABLE users ALTER COLUMN display_name TYPE text")
    with pytest.raises(Unavailable):
        async with uow() as unit:
            await unit.users.get("id-gus")
    async with uow() as unit:  # prepared afresh
        found = await unit.users.get("id-gus")
    assert found is not None and found.display_name == "gus"


async def test_posts_cancelled_mid_statement_leave_no_transaction_behind(engine: AsyncEngine) -> None:
    """A post cancelled while its statement or BEGIN is on the wire (its client left) must not
    leave a transaction open on a pooled connection: it would hold the conversation's row lock,
    and every later post to it would wait for good."""
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    await uow.find_triggers()
    clock, ids, bus = SystemClock(), UuidGenerator(), InProcessBroadcaster()
    register = RegisterUser(uow=uow, hasher=Argon2PasswordHasher(time_cost=1, memory_cost=1024), ids=ids, clock=clock)
    owner = await register.execute(username="owner", password="correct horse")
    start = StartConversation(uow=uow, broadcaster=bus, ids=ids, clock=clock)
    detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[], title="cancelled")
    cid = detail.conversation.id
    post = PostMessage(uow=uow, broadcaster=bus, ids=ids, clock=clock)

    def posting(name: str) -> "asyncio.Future[Any]":
        return asyncio.ensure_future(post.execute(user_id=owner.id, conversation_id=cid, body=name, client_id=name))

    acknowledged: list[str] = []
    for i in range(40):
        tasks = [posting(f"m{i}-{j}") for j in range(6)]
        await asyncio.sleep((i % 8) * 0.0004)  # cancelled at different points of their units
        for task in tasks[::2]:
            task.cancel()
        async with asyncio.timeout(15):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert not [r for r in results if isinstance(r, Exception)]  # cancelled, or stored
        acknowledged += [r.message.body for r in results if not isinstance(r, BaseException)]
    async with asyncio.timeout(15):  # no connection holds the conversation: all of these go through
        after = await asyncio.gather(*(posting(f"after-{j}") for j in range(20)))
    acknowledged += [r.message.body for r in after]
    stored: list[tuple[int, str]] = []
    before = None
    while True:
        page, more = await ListMessages(uow=uow).execute(
            user_id=owner.id, conversation_id=cid, before=before, limit=100
        )
        stored += [(m.seq, m.body) for m in page]
        if not more or not page:
            break
        before = page[0].seq
    seqs = sorted(seq for seq, _ in stored)
    assert seqs == list(range(1, len(seqs) + 1))  # no gap: each seq taken by a committed post
    assert set(acknowledged) <= {body for _, body in stored}  # every acknowledged post is stored


@pytest.mark.parametrize("first", ["prebuilt", "sqlalchemy"])
async def test_a_refused_begin_does_not_poison_its_connection(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """A BEGIN the server refuses (the connection still open, nothing cancelled) fails its unit
    only, whichever path sent it. asyncpg keeps such a transaction as the connection's own, so
    on that connection every later BEGIN would be sent as a SAVEPOINT outside any transaction,
    and fail: the unit drops the connection instead of handing it back to the pool."""
    uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with uow() as unit:
        await unit.users.add(user("hal"))
        await unit.commit()
    refused: list[str] = []
    original = asyncpg.Connection.execute

    async def refusing(connection: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.startswith("BEGIN") and not refused:
            refused.append(query)
            raise asyncpg.exceptions.InternalServerError("refused by the test")
        return await original(connection, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", refusing)
    with pytest.raises(InternalError, match="refused by the test"):
        async with uow() as unit:
            if first == "prebuilt":
                await unit.users.get("id-hal")
            else:  # an expanding IN list goes through SQLAlchemy's execution
                await unit.users.get_many(["id-hal"])
    assert refused
    for name in ("ida", "jon"):  # the pool's one idle connection would be the refused one
        async with asyncio.timeout(10), uow() as unit:
            await unit.users.add(user(name))
            await unit.commit()
    async with uow() as unit:
        assert sorted(await unit.users.get_many(["id-hal", "id-ida", "id-jon"])) == ["id-hal", "id-ida", "id-jon"]
