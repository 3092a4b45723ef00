"""Statement timing (``storage.time_statements``): every statement a unit of work runs is timed
once, whatever built it (a statement prebuilt at import, an ``IN`` list compiled for its call)
and whether it succeeded or failed, on every storage; an observer given twice still hears each
statement once, a second observer hears them all too, and what is heard is how long the
statement took."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from convocore.adapters.sql.storage import SqlStorage
from convocore.domain.errors import Conflict
from convocore.domain.users import User
from tests.support.storage import schema_storage

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def person(name: str) -> User:
    return User(id=f"id-{name}", username=name, display_name=name, password_hash="h", created_at=T0)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite:///{tmp_path / 'timing.db'}" if request.param == "sqlite-file" else "sqlite://"


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[SqlStorage]:
    async with schema_storage(database_url) as storage:
        yield storage


async def _three_statements(storage: SqlStorage, name: str) -> None:
    async with storage() as uow:
        await uow.users.add(person(name))  # prebuilt
        assert [u.id for u in await uow.users.search(prefix=name, after=None, limit=5)] == [f"id-{name}"]
        assert list(await uow.users.get_many([f"id-{name}"])) == [f"id-{name}"]  # an IN list, built per call
        await uow.commit()


async def test_each_statement_is_timed_once_by_each_observer(storage: SqlStorage) -> None:
    observed: list[float] = []
    storage.time_statements(observed.append)
    storage.time_statements(observed.append)  # asked again: still once

    await _three_statements(storage, "erin")
    assert len(observed) == 3 and all(seconds >= 0 for seconds in observed)

    second: list[float] = []
    storage.time_statements(second.append)  # a second observer (another metric on the storage)
    await _three_statements(storage, "frank")
    assert len(observed) == 6 and len(second) == 3
    assert observed[3:] == second  # the same measurements, handed to both


async def test_a_failed_statement_is_timed_too(storage: SqlStorage) -> None:
    observed: list[float] = []
    storage.time_statements(observed.append)
    with pytest.raises(Conflict):
        async with storage() as uow:
            await uow.users.add(person("gina"))
            await uow.users.add(person("gina"))  # the primary key refuses it
    assert len(observed) == 2


async def test_what_is_heard_is_how_long_the_statement_took(postgres_database: str) -> None:
    """An INSERT that waits for another session's uncommitted row with its username is heard as
    taking that long; the read before it, as taking less."""
    async with schema_storage(postgres_database) as storage:
        await _three_statements(storage, "hank")
        observed: list[float] = []
        storage.time_statements(observed.append)
        other = await asyncpg.connect(postgres_database.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await other.execute("BEGIN")
            await other.execute(
                "INSERT INTO users VALUES ('id-other', 'ivan', 'ivan', 'Ivan', 'h', now())"
            )  # not committed: a second "ivan" waits to see whether it will be

            async def roll_back_later() -> None:
                await asyncio.sleep(0.3)
                await other.execute("ROLLBACK")

            rolling_back = asyncio.create_task(roll_back_later())
            async with storage() as uow:
                assert await uow.users.get("id-hank") is not None
                await uow.users.add(person("ivan"))  # free once the other session rolled back
                await uow.commit()
            await rolling_back
        finally:
            await other.close()
        assert len(observed) == 2
        read, insert = observed
        assert insert >= 0.2 and read < insert, observed
