"""The SQLite file's unit of work straight on sqlite3 (``SqliteUnitOfWork``): its duties beyond
the repository contract, which it passes as the ``sqlite`` backend. One connection per engine,
one unit of work at a time on it, a turn never lost to a cancelled waiter, statements still seen
by the engine's listeners, and the connection closed and reopened on demand."""

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.adapters.sql import sqlite_fast, unit_of_work
from convocore.adapters.sql.unit_of_work import (
    SqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWorkFactory,
    SqliteUnitOfWork,
    create_engine,
)
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.users import User
from tests.integration.storage import schema_engine

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def person(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name.title(), password_hash="h", created_at=T0)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with schema_engine(f"sqlite:///{tmp_path / 'uow.db'}") as engine:
        yield engine


async def test_a_file_gets_the_sqlite_unit_of_work_and_memory_keeps_sqlalchemys(engine: AsyncEngine) -> None:
    assert isinstance(SqlAlchemyUnitOfWorkFactory(engine=engine)(), SqliteUnitOfWork)
    in_memory = create_engine("sqlite://")
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine=in_memory)
        assert isinstance(factory(), SqlAlchemyUnitOfWork)
        assert factory.sqlite_connection() is None
    finally:
        await in_memory.dispose()


async def test_every_factory_of_an_engine_takes_turns_on_one_connection(engine: AsyncEngine) -> None:
    first, second = SqlAlchemyUnitOfWorkFactory(engine=engine), SqlAlchemyUnitOfWorkFactory(engine=engine)
    assert first.sqlite_connection() is second.sqlite_connection()
    order: list[str] = []
    inside = asyncio.Event()

    async def holder() -> None:
        async with first() as uow:
            await uow.users.add(person("alice"))
            order.append("holder in")
            inside.set()
            await asyncio.sleep(0.05)  # still holding its turn (and SQLite's write lock)
            order.append("holder commits")
            await uow.commit()
            order.append("holder committed")

    async def waiter() -> None:
        await inside.wait()
        async with second() as uow:
            order.append("waiter in")
            assert await uow.users.get("id-alice") is not None  # it sees the row committed with it
        order.append("waiter out")  # not before the row it read is committed

    await asyncio.gather(holder(), waiter())
    # The turn is the holder's until its commit, which gives it up at once and returns once
    # the COMMIT is done (group commit: below).
    assert order[:3] == ["holder in", "holder commits", "waiter in"]
    assert set(order[3:]) == {"holder committed", "waiter out"}


async def _store(factory: SqlAlchemyUnitOfWorkFactory, name: str) -> None:
    """One unit of work that adds a person and commits."""
    async with factory() as uow:
        await uow.users.add(person(name))
        await uow.commit()


def _traced(factory: SqlAlchemyUnitOfWorkFactory, seen: list[str]) -> None:
    raw = factory.sqlite_connection()
    assert raw is not None
    raw.set_trace_callback(lambda sql: seen.append(sql.split()[0].upper()))


async def test_units_committing_in_one_round_share_one_commit(engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)
    statements: list[str] = []
    _traced(factory, statements)

    await asyncio.gather(*(_store(factory, f"u{i}") for i in range(20)))
    assert statements.count("BEGIN") == 1 and statements.count("COMMIT") == 1
    assert statements.count("SAVEPOINT") == statements.count("RELEASE") == 19

    statements.clear()
    await _store(factory, "later")  # a round of its own
    assert statements == ["BEGIN", "INSERT", "COMMIT"]
    SqlAlchemyUnitOfWorkFactory(engine=engine).close()  # what is committed is on disk for a new connection
    async with factory() as uow:
        assert len(await uow.users.get_many([f"id-u{i}" for i in range(20)] + ["id-later"])) == 21


async def test_units_go_on_in_the_order_they_committed_when_a_batch_fills_up(engine: AsyncEngine) -> None:
    """The unit that fills a batch commits it at once; it must not go on (publish its message,
    say) before the units that committed into the batch earlier, which wake a round later."""
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)
    committed: list[int] = []
    resumed: list[int] = []

    async def store(i: int) -> None:
        async with factory() as uow:
            await uow.users.add(person(f"p{i}"))
            committed.append(i)
            await uow.commit()
        resumed.append(i)

    await asyncio.gather(*(store(i) for i in range(unit_of_work._BATCH_MAX + 10)))
    assert resumed == committed


async def test_the_units_statements_run_on_one_cursor(engine: AsyncEngine) -> None:
    """Lever 49: no cursor made per statement (``Connection.execute`` makes one each time)."""
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)
    await _store(factory, "first")  # opens the connection
    raw = factory.sqlite_connection()
    ran: list[object] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in ("execute", "cursor"):
            owner = getattr(arg, "__self__", None)
            if owner is raw or (isinstance(owner, sqlite3.Cursor) and owner.connection is raw):
                ran.append(owner)

    sys.setprofile(profile)
    try:
        await _store(factory, "second")  # BEGIN, INSERT, COMMIT
    finally:
        sys.setprofile(None)
    assert len(ran) == 3
    assert all(isinstance(owner, sqlite3.Cursor) for owner in ran) and len({id(owner) for owner in ran}) == 1
    async with factory() as uow:
        assert await uow.users.get("id-second") is not None


async def test_a_unit_failing_inside_a_batch_undoes_only_its_own_changes(engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)

    async def fails() -> None:
        async with factory() as uow:
            await uow.users.add(person("bob"))
            await uow.users.add(person("alice"))  # the name is taken (by the batch): a conflict

    outcome = await asyncio.gather(_store(factory, "alice"), fails(), _store(factory, "carol"), return_exceptions=True)
    assert outcome[0] is None and outcome[2] is None and isinstance(outcome[1], Conflict)
    async with factory() as uow:
        assert await uow.users.get("id-alice") is not None and await uow.users.get("id-carol") is not None
        assert await uow.users.get("id-bob") is None


async def test_a_reader_inside_a_batch_leaves_once_it_is_committed_and_a_failed_commit_fails_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)
    events: list[str] = []
    _traced(factory, events)

    async def writer(name: str) -> None:
        await _store(factory, name)
        events.append(f"{name} committed")

    async def reader(name: str) -> None:
        async with factory() as uow:
            found = await uow.users.get(f"id-{name}")
        events.append(f"read {name}: {found is not None}")

    await asyncio.gather(writer("alice"), reader("alice"))
    assert [e for e in events if e in ("COMMIT", "read alice: True", "alice committed")] == [
        "COMMIT",
        "alice committed",
        "read alice: True",
    ]

    real = sqlite_fast.execute

    def no_commit(raw: Any, sql: str, values: Any = ()) -> Any:
        if sql == "COMMIT":
            raise exc.OperationalError(sql, values, Exception("disk I/O error"))
        return real(raw, sql, values)

    monkeypatch.setattr(sqlite_fast, "execute", no_commit)
    outcome = await asyncio.gather(writer("bob"), reader("bob"), writer("carol"), return_exceptions=True)
    monkeypatch.setattr(sqlite_fast, "execute", real)
    assert [type(o) for o in outcome] == [Unavailable, Unavailable, Unavailable]
    async with factory() as uow:
        assert await uow.users.get("id-bob") is None and await uow.users.get("id-carol") is None
        await uow.users.add(person("dave"))  # the connection goes on
        await uow.commit()
    async with factory() as uow:
        assert await uow.users.get("id-dave") is not None


async def test_a_waiter_cancelled_before_its_turn_does_not_keep_it(engine: AsyncEngine) -> None:
    new_uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    release = asyncio.Event()

    async def holder() -> None:
        async with new_uow():
            await release.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(new_uow().__aenter__())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await held
    async with asyncio.timeout(5):
        async with new_uow() as uow:  # the turn is free again
            await uow.users.add(person("bob"))
            await uow.commit()


async def test_a_turn_not_given_in_time_is_unavailable(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unit_of_work, "_TURN_TIMEOUT_S", 0.05)
    new_uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with new_uow():
        with pytest.raises(Unavailable):
            async with new_uow():
                pass


async def test_a_failed_statement_rolls_back_and_frees_the_turn(engine: AsyncEngine) -> None:
    new_uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with new_uow() as uow:
        await uow.users.add(person("carol"))
        await uow.commit()
    with pytest.raises(Conflict):
        async with new_uow() as uow:
            await uow.users.add(person("dave"))
            await uow.users.add(person("carol"))  # the same id: the primary key refuses it
    raw = new_uow.sqlite_connection()
    assert raw is not None and not raw.in_transaction
    async with new_uow() as uow:
        assert await uow.users.get("id-dave") is None
        assert await uow.users.get("id-carol") is not None


async def test_the_engines_listeners_see_every_statement(engine: AsyncEngine) -> None:
    seen: list[str] = []

    def before(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    new_uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with new_uow() as uow:
        await uow.users.add(person("erin"))  # a prebuilt statement: sqlite_fast
        assert [u.id for u in await uow.users.search(prefix="er", after=None, limit=5)] == ["id-erin"]  # built per call
        assert list(await uow.users.get_many(["id-erin"])) == ["id-erin"]  # an expanding IN list
    assert seen == ["INSERT", "SELECT", "SELECT"]


async def test_closed_it_reopens_and_a_ping_answers_beside_a_transaction(engine: AsyncEngine) -> None:
    new_uow = SqlAlchemyUnitOfWorkFactory(engine=engine)
    async with new_uow() as uow:
        await uow.users.add(person("frank"))
        await uow.commit()
    before = new_uow.sqlite_connection()
    new_uow.close()
    async with new_uow() as uow:
        assert await uow.users.get("id-frank") is not None
        await uow.users.add(person("grace"))
        await new_uow.ping()  # on the same connection, inside this transaction: reads nothing of it
        await uow.commit()
    assert new_uow.sqlite_connection() is not before


async def test_a_batch_whose_transaction_sqlite_ended_fails_and_the_next_unit_starts_afresh(
    engine: AsyncEngine,
) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)

    async def rolled_back_by_sqlite() -> None:
        raw = factory.sqlite_connection()
        assert raw is not None and raw.in_transaction  # the first writer's batch awaits its COMMIT
        raw.execute("ROLLBACK")  # as SQLite does by itself on a full disk or an I/O error

    async def next_writer() -> None:
        await asyncio.sleep(0)
        await _store(factory, "carol")

    outcome = await asyncio.gather(
        _store(factory, "alice"), rolled_back_by_sqlite(), _store(factory, "bob"), next_writer(), return_exceptions=True
    )
    assert isinstance(outcome[0], Unavailable) and list(outcome[1:]) == [None, None, None]
    async with factory() as uow:
        assert await uow.users.get("id-alice") is None
        assert await uow.users.get("id-bob") is not None and await uow.users.get("id-carol") is not None
