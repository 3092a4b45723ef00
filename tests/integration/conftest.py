"""Fixtures for tests against real servers and services."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support.remote import Remote
from tests.support.server import ServerProcess
from tests.support.storage import Storage, storage_for


@pytest.fixture
async def postgres_database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database on the machine's PostgreSQL, dropped afterwards."""
    name = f"convocore_it_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(postgres_url)
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql")))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class Backends:
    """Ends other sessions of the machine's PostgreSQL, as a restart or an administrator would."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self._admin = admin

    async def terminate(self, pid: int) -> None:
        await self._admin.execute("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.1)  # gone before the test goes on


@pytest.fixture
async def postgres_backends(postgres_url: str) -> AsyncIterator[Backends]:
    admin = await asyncpg.connect(urlunsplit(urlsplit(postgres_url)._replace(scheme="postgresql")))
    try:
        yield Backends(admin)
    finally:
        await admin.close()


@pytest.fixture
def server_storage(tmp_path: Path) -> Iterator[Storage]:
    """Memory, unless CONVOCORE_TEST_DATABASE names another storage (see storage.py)."""
    with storage_for(default="memory", tmp=tmp_path) as storage:
        yield storage


@pytest.fixture
def redis_prefix() -> str:
    """Channel and key prefix of one test, so runs sharing the machine's Redis never meet."""
    return f"convocore-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def remote(server: ServerProcess) -> AsyncIterator[Remote]:
    """A client of the module's ``server`` (a fixture each module that uses this defines)."""
    client = Remote(server.base_url, server.ws_url)
    yield client
    await client.close()
