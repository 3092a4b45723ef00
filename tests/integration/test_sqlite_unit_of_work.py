"""The SQLite file's unit of work straight on sqlite3 (``SqliteUnitOfWork``): its duties beyond
the repository contract, which it passes as the ``sqlite`` backend. One connection per engine,
one unit of work at a time on it, a turn never lost to a cancelled waiter, statements still seen
by the engine's listeners, and the connection closed and reopened on demand."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.adapters.sql import unit_of_work
from convocore.adapters.sql.unit_of_work import (
    SqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWorkFactory,
    SqliteUnitOfWork,
    create_engine,
    create_schema,
)
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.users import User

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def person(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name.title(), password_hash="h", created_at=T0)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'uow.db'}")
    try:
        await create_schema(engine)
        yield engine
    finally:
        SqlAlchemyUnitOfWorkFactory(engine=engine).close()
        await engine.dispose()


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
            await uow.commit()
            order.append("holder out")

    async def waiter() -> None:
        await inside.wait()
        async with second() as uow:
            order.append("waiter in")
            assert await uow.users.get("id-alice") is not None  # it sees the committed row

    await asyncio.gather(holder(), waiter())
    assert order == ["holder in", "holder out", "waiter in"]


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
