"""PostgreSQL's pooled connections are pinged at checkout only after sitting idle
(``engine.ping_after_idle``): one used a moment ago is handed out as it is, one idle
for longer is pinged and replaced if dead, and one that died unpinged fails a single unit with
``Unavailable`` before the pool recovers. (The server-level view: test_faults.py.)"""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from convocore.adapters.sql.migrate import create_schema
from convocore.adapters.sql.postgres import PostgresStorage
from convocore.domain.errors import Unavailable
from tests.integration.conftest import Backends


class Pings:
    """Counts the dialect's pings on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        dialect = engine.sync_engine.dialect
        ping: Callable[[Any], bool] = dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return ping(dbapi_connection)

        dialect.do_ping = counted  # type: ignore[method-assign]


def storage_pinging_after(url: str, idle_s: float) -> PostgresStorage:
    return PostgresStorage(url, ping_after_idle_s=idle_s)


async def backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_used_a_moment_ago_is_not_pinged(postgres_database: str) -> None:
    engine = PostgresStorage(postgres_database).engine  # the default: ping after a second idle
    pings = Pings(engine)
    try:
        first = await backend(engine)
        for _ in range(20):
            assert await backend(engine) == first  # the same pooled connection each time
        assert pings.count == 0
    finally:
        await engine.dispose()


async def test_an_idle_connection_is_pinged_at_checkout(postgres_database: str) -> None:
    engine = storage_pinging_after(postgres_database, 0.05).engine
    pings = Pings(engine)
    try:
        first = await backend(engine)
        assert pings.count == 0  # newly opened: not pinged
        await asyncio.sleep(0.1)
        assert await backend(engine) == first
        assert pings.count == 1
        assert await backend(engine) == first  # straight after: not again
        assert pings.count == 1
    finally:
        await engine.dispose()


async def test_an_idle_connection_that_died_is_replaced_at_checkout(
    postgres_database: str, postgres_backends: Backends
) -> None:
    engine = storage_pinging_after(postgres_database, 0.05).engine
    try:
        first = await backend(engine)
        await postgres_backends.terminate(first)
        second = await backend(engine)  # no error: the ping found it dead, the pool reconnected
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_that_died_unpinged_fails_one_unit_then_the_pool_recovers(
    postgres_database: str, postgres_backends: Backends
) -> None:
    uow = storage_pinging_after(postgres_database, 60)
    engine = uow.engine
    try:
        await create_schema(uow)
        first = await backend(engine)
        await postgres_backends.terminate(first)
        with pytest.raises(Unavailable):
            async with uow() as unit:
                await unit.users.get_by_username("nobody")
        async with uow() as unit:  # the dead connection was invalidated: a new one
            assert await unit.users.get_by_username("nobody") is None
        assert await backend(engine) != first
    finally:
        await engine.dispose()
