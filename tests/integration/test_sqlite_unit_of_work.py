"""SQLite's units of work (``SqliteStorage``): their duties beyond the repository contract, which
they pass as the ``sqlite`` backend. Every unit of a storage runs on its one ``sqlite3``
connection, one at a time; units committing in one round share one COMMIT, each inside a
savepoint of it, and each returns only once that COMMIT is done (or failed, which fails them
all); a turn is never lost to a cancelled waiter nor waited for without end; and the connection
is closed and reopened on demand. Seen through the storage's own ``sqlite3`` connection (its
trace callback), a second connection on the file, and the units' answers."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from convocore.adapters.sql import migrate
from convocore.adapters.sql.migrate import create_schema
from convocore.adapters.sql.sqlite import SqliteStorage
from convocore.adapters.sql.sqlite_link import BATCH_MAX
from convocore.adapters.sql.storage import SqlStorage, open_storage
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.users import User
from tests.support.storage import schema_storage

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def person(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name.title(), password_hash="h", created_at=T0)


def _sqlite(storage: SqlStorage) -> SqliteStorage:
    assert isinstance(storage, SqliteStorage)
    return storage


@pytest.fixture(params=["file", "memory"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    url = f"sqlite:///{tmp_path / 'uow.db'}" if request.param == "file" else "sqlite://"
    async with schema_storage(url) as storage:
        yield _sqlite(storage)


@pytest.fixture
async def file_storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with schema_storage(f"sqlite:///{tmp_path / 'uow.db'}") as storage:
        yield _sqlite(storage)


async def _store(storage: SqliteStorage, name: str) -> None:
    """One unit of work that adds a person and commits."""
    async with storage() as uow:
        await uow.users.add(person(name))
        await uow.commit()


def _traced(storage: SqliteStorage, seen: list[str]) -> None:
    """Each statement run on the storage's connection, by its first word."""
    storage.sqlite_connection().set_trace_callback(lambda sql: seen.append(sql.split()[0].upper()))


async def test_every_unit_takes_its_turn_on_the_storages_one_connection(storage: SqliteStorage) -> None:
    raw = storage.sqlite_connection()
    statements: list[str] = []
    _traced(storage, statements)
    order: list[str] = []
    inside = asyncio.Event()

    async def holder() -> None:
        async with storage() as uow:
            await uow.users.add(person("alice"))
            order.append("holder in")
            inside.set()
            await asyncio.sleep(0.05)  # still holding its turn (and SQLite's write lock)
            order.append("holder commits")
            await uow.commit()
            order.append("holder committed")

    async def waiter() -> None:
        await inside.wait()
        async with storage() as uow:
            order.append("waiter in")
            assert await uow.users.get("id-alice") is not None  # it sees the row committed with it
        order.append("waiter out")  # not before the row it read is committed

    await asyncio.gather(holder(), waiter())
    # The turn is the holder's until its commit, which gives it up at once and returns once
    # the COMMIT is done (group commit: below).
    assert order[:3] == ["holder in", "holder commits", "waiter in"]
    assert set(order[3:]) == {"holder committed", "waiter out"}
    # Both units ran on this connection: the insert, the read and the one COMMIT are all here.
    assert statements.count("INSERT") == 1 and statements.count("SELECT") == 1 and statements.count("COMMIT") == 1
    assert storage.sqlite_connection() is raw


async def test_units_committing_in_one_round_share_one_commit(storage: SqliteStorage) -> None:
    statements: list[str] = []
    _traced(storage, statements)

    await asyncio.gather(*(_store(storage, f"u{i}") for i in range(20)))
    assert statements.count("BEGIN") == 1 and statements.count("COMMIT") == 1
    assert statements.count("SAVEPOINT") == statements.count("RELEASE") == 19

    statements.clear()
    await _store(storage, "later")  # a round of its own
    assert statements == ["BEGIN", "INSERT", "COMMIT"]
    async with storage() as uow:
        assert len(await uow.users.get_many([f"id-u{i}" for i in range(20)] + ["id-later"])) == 21


async def test_what_a_shared_commit_acknowledged_is_in_the_file(file_storage: SqliteStorage, tmp_path: Path) -> None:
    await asyncio.gather(*(_store(file_storage, f"u{i}") for i in range(20)))
    other = sqlite3.connect(tmp_path / "uow.db")  # another connection reads only what is committed
    try:
        (count,) = other.execute("SELECT count(*) FROM users").fetchone()
    finally:
        other.close()
    assert count == 20


async def test_units_go_on_in_the_order_they_committed_when_a_batch_fills_up(storage: SqliteStorage) -> None:
    """The unit that fills a batch commits it at once; it must not go on (publish its message,
    say) before the units that committed into the batch earlier, which wake a round later."""
    statements: list[str] = []
    _traced(storage, statements)
    committed: list[int] = []
    resumed: list[int] = []

    async def store(i: int) -> None:
        async with storage() as uow:
            await uow.users.add(person(f"p{i}"))
            committed.append(i)
            await uow.commit()
        resumed.append(i)

    await asyncio.gather(*(store(i) for i in range(BATCH_MAX + 10)))
    assert resumed == committed
    assert statements.count("COMMIT") == 2  # the full batch at its cap, then the rest


async def test_a_unit_failing_inside_a_batch_undoes_only_its_own_changes(storage: SqliteStorage) -> None:
    async def fails() -> None:
        async with storage() as uow:
            await uow.users.add(person("bob"))
            await uow.users.add(person("alice"))  # the name is taken (by the batch): a conflict

    outcome = await asyncio.gather(_store(storage, "alice"), fails(), _store(storage, "carol"), return_exceptions=True)
    assert outcome[0] is None and outcome[2] is None and isinstance(outcome[1], Conflict)
    async with storage() as uow:
        assert await uow.users.get("id-alice") is not None and await uow.users.get("id-carol") is not None
        assert await uow.users.get("id-bob") is None


async def test_a_reader_inside_a_batch_leaves_once_it_is_committed(storage: SqliteStorage) -> None:
    events: list[str] = []
    _traced(storage, events)

    async def writer(name: str) -> None:
        await _store(storage, name)
        events.append(f"{name} committed")

    async def reader(name: str) -> None:
        async with storage() as uow:
            found = await uow.users.get(f"id-{name}")  # inside the batch: it sees the uncommitted row
        events.append(f"read {name}: {found is not None}")

    await asyncio.gather(writer("alice"), reader("alice"))
    assert [e for e in events if e in ("COMMIT", "read alice: True", "alice committed")] == [
        "COMMIT",
        "alice committed",
        "read alice: True",
    ]


async def test_a_failed_commit_fails_every_unit_of_its_batch_and_the_connection_goes_on(tmp_path: Path) -> None:
    """SQLite's own refusal: in rollback-journal mode a COMMIT needs every reader of the file
    gone, and another connection holding a read transaction makes it fail as busy."""
    path = tmp_path / "busy.db"
    storage = _sqlite(open_storage(f"sqlite:///{path}", sqlite_busy_timeout_ms=50))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await migrate.create_schema(storage)
        raw = storage.sqlite_connection()
        assert raw.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
        statements: list[str] = []
        _traced(storage, statements)

        async def reader(name: str) -> None:
            async with storage() as uow:
                assert await uow.users.get(f"id-{name}") is not None  # inside the batch, as yet uncommitted

        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM users").fetchall()  # a reader holding its shared lock
        outcome = await asyncio.gather(
            _store(storage, "bob"), reader("bob"), _store(storage, "carol"), return_exceptions=True
        )
        assert [type(o) for o in outcome] == [Unavailable, Unavailable, Unavailable], outcome
        assert statements.count("COMMIT") == 1 and statements[-1] == "ROLLBACK" and not raw.in_transaction
        other.execute("ROLLBACK")

        async with storage() as uow:
            assert await uow.users.get("id-bob") is None and await uow.users.get("id-carol") is None
            await uow.users.add(person("dave"))  # the connection goes on
            await uow.commit()
        assert other.execute("SELECT id FROM users").fetchall() == [("id-dave",)]
    finally:
        other.close()
        await storage.dispose()


async def test_a_waiter_cancelled_before_its_turn_does_not_keep_it(storage: SqliteStorage) -> None:
    release = asyncio.Event()

    async def holder() -> None:
        async with storage():
            await release.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(storage().__aenter__())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await held
    async with asyncio.timeout(5):
        async with storage() as uow:  # the turn is free again
            await uow.users.add(person("bob"))
            await uow.commit()
    async with storage() as uow:
        assert await uow.users.get("id-bob") is not None


async def test_a_turn_not_given_in_time_is_unavailable(tmp_path: Path) -> None:
    """A waiter still waits before its turn timeout and hears ``Unavailable`` once it passes,
    while the holder keeps its turn throughout."""
    storage = SqliteStorage(f"sqlite:///{tmp_path / 'turns.db'}", turn_timeout_s=0.3)
    await create_schema(storage)
    try:
        release, holding = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with storage() as uow:
                await uow.users.add(person("holder"))
                holding.set()
                await release.wait()
                await uow.commit()

        async def waiter() -> None:
            async with storage():
                pass

        held = asyncio.create_task(holder())
        await holding.wait()
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # not before its time
        with pytest.raises(Unavailable):
            await asyncio.wait_for(waiting, 5)
        release.set()
        await held  # the holder's turn was never taken from it
        async with storage() as uow:
            assert await uow.users.get("id-holder") is not None
    finally:
        await storage.dispose()


async def test_a_failed_statement_rolls_back_and_frees_the_turn(storage: SqliteStorage) -> None:
    await _store(storage, "carol")
    with pytest.raises(Conflict):
        async with storage() as uow:
            await uow.users.add(person("dave"))
            await uow.users.add(person("carol"))  # the same id: the primary key refuses it
    assert not storage.sqlite_connection().in_transaction
    async with asyncio.timeout(5), storage() as uow:
        assert await uow.users.get("id-dave") is None
        assert await uow.users.get("id-carol") is not None


async def test_closed_it_reopens_and_a_ping_answers_beside_a_transaction(file_storage: SqliteStorage) -> None:
    await _store(file_storage, "frank")
    before = file_storage.sqlite_connection()
    await file_storage.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        before.execute("SELECT 1")  # closed for good
    async with file_storage() as uow:
        assert await uow.users.get("id-frank") is not None
        await uow.users.add(person("grace"))
        await file_storage.ping()  # on the same connection, inside this transaction: ends nothing
        raw = file_storage.sqlite_connection()
        assert raw is not before and raw.in_transaction
        await uow.commit()
    async with file_storage() as uow:
        assert await uow.users.get("id-grace") is not None


async def test_a_batch_whose_transaction_sqlite_ended_fails_and_the_next_unit_starts_afresh(
    storage: SqliteStorage,
) -> None:
    async def rolled_back_by_sqlite() -> None:
        raw = storage.sqlite_connection()
        assert raw.in_transaction  # the first writer's batch awaits its COMMIT
        raw.execute("ROLLBACK")  # as SQLite does by itself on a full disk or an I/O error

    async def next_writer() -> None:
        await asyncio.sleep(0)
        await _store(storage, "carol")

    outcome = await asyncio.gather(
        _store(storage, "alice"), rolled_back_by_sqlite(), _store(storage, "bob"), next_writer(), return_exceptions=True
    )
    assert isinstance(outcome[0], Unavailable) and list(outcome[1:]) == [None, None, None]
    async with storage() as uow:
        assert await uow.users.get("id-alice") is None
        assert await uow.users.get("id-bob") is not None and await uow.users.get("id-carol") is not None
