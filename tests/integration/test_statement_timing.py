"""Statement timing (``adapters/sql/timing.py``): every statement an engine runs is timed once,
whichever path ran it (a SQLite file's prebuilt statements on ``sqlite3``, which time themselves
when the timers are the engine's only cursor listeners; SQLAlchemy's path, by cursor events),
and a listener an application adds still sees every statement."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.adapters.sql.timing import time_statements
from convocore.adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory
from convocore.domain.users import User
from tests.integration.storage import schema_engine

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["file", "memory"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with schema_engine(
        f"sqlite:///{tmp_path / 'timing.db'}" if request.param == "file" else "sqlite://"
    ) as engine:
        yield engine


async def _three_statements(factory: SqlAlchemyUnitOfWorkFactory, name: str) -> None:
    async with factory() as uow:
        await uow.users.add(
            User(id=f"id-{name}", username=name, display_name=name, password_hash="h", created_at=T0)
        )  # prebuilt: sqlite_fast on a file
        assert [u.id for u in await uow.users.search(prefix=name, after=None, limit=5)] == [
            f"id-{name}"
        ]  # built per call
        assert list(await uow.users.get_many([f"id-{name}"])) == [f"id-{name}"]  # an expanding IN list
        await uow.commit()


async def test_each_statement_is_timed_once_and_other_listeners_still_see_it(engine: AsyncEngine) -> None:
    observed: list[float] = []
    time_statements(engine.sync_engine, observed.append)
    time_statements(engine.sync_engine, observed.append)  # asked again: still once
    factory = SqlAlchemyUnitOfWorkFactory(engine=engine)

    await _three_statements(factory, "erin")
    assert len(observed) == 3 and all(seconds >= 0 for seconds in observed)

    seen: list[str] = []

    def before(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    await _three_statements(factory, "frank")
    assert seen == ["INSERT", "SELECT", "SELECT"]
    assert len(observed) == 6  # timed once each with another listener beside the timer

    second: list[float] = []
    time_statements(engine.sync_engine, second.append)  # a second timer (another app on the engine)
    event.remove(engine.sync_engine, "before_cursor_execute", before)
    await _three_statements(factory, "grace")
    assert len(observed) == 9 and len(second) == 3
