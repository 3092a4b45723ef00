"""PostgreSQL's units of work (``PostgresStorage``): each holds one pooled connection and runs its
statements and its transaction on the asyncpg connection under it. Beyond the repository
contract: a unit's statements share one transaction, and after a commit the next ones begin
another; a clash is a ``Conflict`` that undoes the unit; and a connection that failed mid-way
(its server process gone, a statement cancelled, a BEGIN refused, a prepared statement the
schema changed under) fails its unit only, with ``Unavailable`` where a retry may succeed, and
is not handed to another unit while it could still fail it. Which server process served each
unit is read from the pool as it hands connections out."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy import Connection, event, text

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql import migrate
from convocore.adapters.sql.postgres import PostgresStorage
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import ListMessages, PostMessage
from convocore.domain.conversations import Kind
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.users import User
from tests.integration.conftest import Backends


@pytest.fixture
async def storage(postgres_database: str) -> AsyncIterator[PostgresStorage]:
    storage = PostgresStorage(postgres_database)
    try:
        await migrate.upgrade(storage)
        yield storage
    finally:
        await storage.dispose()


def user(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name, password_hash="x", created_at=datetime.now(UTC))


def server_processes(storage: PostgresStorage) -> list[int]:
    """The server process (backend pid) of each connection the pool hands out, in order."""
    pids: list[int] = []

    def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pids.append(dbapi_connection.driver_connection.get_server_pid())

    event.listen(storage.engine.sync_engine, "checkout", checked_out)
    return pids


def asyncpg_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


async def test_a_units_statements_share_one_transaction_and_a_commit_begins_the_next(
    storage: PostgresStorage,
) -> None:
    async with storage() as unit:
        await unit.users.add(user("bob"))
        assert list(await unit.users.get_many(["id-bob"])) == ["id-bob"]  # it sees its own write
        # left without commit
    async with storage() as unit:
        assert await unit.users.get("id-bob") is None
        await unit.users.add(user("bob"))
        await unit.commit()
        await unit.users.add(user("cat"))  # after a commit: a new transaction, which must commit too
        await unit.commit()
        await unit.users.add(user("dot"))  # and this one is left without
    async with storage() as unit:
        assert sorted(await unit.users.get_many(["id-bob", "id-cat", "id-dot"])) == ["id-bob", "id-cat"]
        found = await unit.users.get_by_username("BOB")  # read back by its key
    assert found is not None and found.id == "id-bob" and found.created_at.tzinfo is not None


async def test_a_clash_is_a_conflict_and_undoes_the_unit(storage: PostgresStorage) -> None:
    async with storage() as unit:
        await unit.users.add(user("dan"))
        await unit.commit()
    with pytest.raises(Conflict) as raised:
        async with storage() as unit:
            await unit.users.add(user("eve"))
            await unit.users.add(dataclasses.replace(user("DAN"), id="id-dan2"))  # the same name, cased otherwise
    assert raised.value.field == "username"
    async with storage() as unit:
        assert await unit.users.get("id-eve") is None  # the unit's earlier insert went with it
        await unit.users.add(user("eve"))  # and its connection goes on
        await unit.commit()


async def test_a_lost_connection_is_unavailable_and_is_not_reused(
    storage: PostgresStorage, postgres_backends: Backends
) -> None:
    served = server_processes(storage)
    async with storage() as unit:
        await unit.users.add(user("fay"))
        await unit.commit()
    await postgres_backends.terminate(served[-1])
    with pytest.raises(Unavailable):  # used a moment ago, so not pinged: its first statement fails
        async with storage() as unit:
            await unit.users.get("id-fay")
    assert served[-1] == served[0]
    async with storage() as unit:  # invalidated, not handed out again
        found = await unit.users.get("id-fay")
    assert found is not None
    assert served[-1] != served[0] and storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_statement_the_schema_changed_under_is_unavailable_once(storage: PostgresStorage) -> None:
    served = server_processes(storage)
    async with storage() as unit:
        await unit.users.add(user("gus"))
        await unit.commit()
        assert await unit.users.get("id-gus") is not None  # prepared on this connection

    def widen(connection: Connection) -> None:
        connection.execute(text("ALTER TABLE users ALTER COLUMN display_name TYPE text"))

    await storage.run_sync(widen)
    with pytest.raises(Unavailable):
        async with storage() as unit:
            await unit.users.get("id-gus")
    async with storage() as unit:  # prepared afresh
        found = await unit.users.get("id-gus")
    assert found is not None and found.display_name == "gus"
    assert len(set(served)) == 1  # all on the one connection, which stayed usable


async def test_posts_cancelled_mid_statement_leave_no_transaction_behind(
    storage: PostgresStorage, postgres_database: str
) -> None:
    """A post cancelled while its statement or BEGIN is on the wire (its client left) must not
    leave a transaction open on a pooled connection: it would hold the conversation's row lock,
    and every later post to it would wait for good."""
    clock, ids, bus = SystemClock(), UuidGenerator(), InProcessBroadcaster()
    hasher = Argon2PasswordHasher(time_cost=1, memory_cost=1024)
    owner = await RegisterUser(uow=storage, hasher=hasher, ids=ids, clock=clock).execute(
        username="owner", password="correct horse"
    )
    start = StartConversation(uow=storage, broadcaster=bus, ids=ids, clock=clock)
    detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[], title="cancelled")
    cid = detail.conversation.id
    post = PostMessage(uow=storage, broadcaster=bus, ids=ids, clock=clock)

    def posting(name: str) -> "asyncio.Future[Any]":
        return asyncio.ensure_future(post.execute(user_id=owner.id, conversation_id=cid, body=name, client_id=name))

    acknowledged: list[str] = []
    cancelled = 0
    for i in range(40):
        tasks = [posting(f"m{i}-{j}") for j in range(6)]
        await asyncio.sleep((i % 8) * 0.0004)  # cancelled at different points of their units
        for task in tasks[::2]:
            task.cancel()
        async with asyncio.timeout(15):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert not [r for r in results if isinstance(r, Exception)]  # cancelled, or stored
        acknowledged += [r.message.body for r in results if not isinstance(r, BaseException)]
        cancelled += sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert cancelled > 0
    async with asyncio.timeout(15):  # no connection holds the conversation: all of these go through
        after = await asyncio.gather(*(posting(f"after-{j}") for j in range(20)))
    acknowledged += [r.message.body for r in after]
    stored: list[tuple[int, str]] = []
    before = None
    while True:
        page, more = await ListMessages(uow=storage).execute(
            user_id=owner.id, conversation_id=cid, before=before, limit=100
        )
        stored += [(m.seq, m.body) for m in page]
        if not more or not page:
            break
        before = page[0].seq
    seqs = sorted(seq for seq, _ in stored)
    assert seqs == list(range(1, len(seqs) + 1))  # no gap: each seq taken by a committed post
    assert set(acknowledged) <= {body for _, body in stored}  # every acknowledged post is stored
    watcher = await asyncpg.connect(asyncpg_url(postgres_database))
    try:
        lingering = await watcher.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'"
        )
    finally:
        await watcher.close()
    assert lingering == []  # no connection of the pool sits in a transaction


async def test_a_refused_begin_does_not_poison_its_connection(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BEGIN the server refuses (the connection still open, nothing cancelled) fails its unit
    only. asyncpg keeps such a transaction as the connection's own, so on that connection every
    later BEGIN would be sent as a SAVEPOINT outside any transaction, and fail: the unit drops
    the connection instead of handing it back to the pool."""
    served = server_processes(storage)
    async with storage() as unit:
        await unit.users.add(user("hal"))
        await unit.commit()
    refused: list[str] = []
    original = asyncpg.Connection.execute

    async def refusing(connection: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.startswith("BEGIN") and not refused:
            refused.append(query)
            raise asyncpg.exceptions.InternalServerError("refused by the test")
        return await original(connection, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", refusing)  # the server's refusal, injected
    with pytest.raises(asyncpg.exceptions.InternalServerError, match="refused by the test"):
        async with storage() as unit:
            await unit.users.get("id-hal")
    assert refused
    poisoned = served[-1]
    for name in ("ida", "jon"):  # the pool's one idle connection would be the refused one
        async with asyncio.timeout(10), storage() as unit:
            await unit.users.add(user(name))
            await unit.commit()
    async with storage() as unit:
        assert sorted(await unit.users.get_many(["id-hal", "id-ida", "id-jon"])) == ["id-hal", "id-ida", "id-jon"]
    assert poisoned not in served[-3:]
