"""The storage the app and server fixtures run on: CONVOCORE_TEST_DATABASE=memory|sqlite|postgres.

Unset, each fixture keeps its own default (the in-process API app and the chat-socket server
run on memory, the real-time server on its SQLite file). ``postgres`` gives every app or server
a fresh database on the machine's PostgreSQL, dropped afterwards.
"""

import asyncio
import atexit
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import asyncpg

from convocore.adapters.sql import migrate
from convocore.adapters.sql.storage import SqlStorage, open_storage
from tests.conftest import POSTGRES_URL, require_service

KINDS = ("memory", "sqlite", "postgres")
CHOSEN = os.environ.get("CONVOCORE_TEST_DATABASE", "").strip().lower()
if CHOSEN and CHOSEN not in KINDS:
    raise ValueError(f"CONVOCORE_TEST_DATABASE must be one of {', '.join(KINDS)}, not {CHOSEN!r}")


@dataclass(frozen=True)
class Storage:
    kind: str
    database_url: str | None  # None for memory

    @property
    def settings(self) -> dict[str, Any]:
        """Keyword arguments for ``Settings``."""
        if self.database_url is None:
            return {"memory": True}
        return {"database_url": self.database_url, "migrate": True}

    @property
    def server_args(self) -> tuple[str, ...]:
        """Arguments for ``convocore serve`` (test servers migrate: see server.MIGRATED)."""
        return ("--memory",) if self.database_url is None else ("--database-url", self.database_url)


@contextmanager
def storage_for(*, default: str, tmp: Path) -> Iterator[Storage]:
    kind = CHOSEN or default
    if kind == "memory":
        yield Storage(kind, None)
    elif kind == "sqlite":
        yield Storage(kind, f"sqlite+aiosqlite:///{tmp / 'convocore.db'}")
    else:
        with fresh_postgres_database() as url:
            yield Storage(kind, url)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A copy of a template already migrated to head (copying is cheaper than migrating). Usable
    from sync and async fixtures alike: the admin work runs on a loop of its own."""
    parts = urlsplit(require_service("postgres", POSTGRES_URL, 5432))
    admin_url = urlunsplit(parts._replace(scheme="postgresql"))
    name = f"convocore_it_{uuid.uuid4().hex[:10]}"
    _run(_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{_template(parts)}"'))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        _run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@cache
def _template(parts: SplitResult) -> str:
    """Made once per test process, dropped when it exits."""
    admin_url = urlunsplit(parts._replace(scheme="postgresql"))
    name = f"convocore_tpl_{uuid.uuid4().hex[:10]}"
    _run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    # At exit no loop runs any more (and no new thread may start): a plain asyncio.run it is.
    atexit.register(lambda: asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
    _run(_migrate(urlunsplit(parts._replace(path=f"/{name}"))))
    return name


async def _migrate(url: str) -> None:
    storage = open_storage(url)
    try:
        await migrate.upgrade(storage)
    finally:
        await storage.dispose()  # a template must have no connections when it is copied


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _run(work: Any) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


@asynccontextmanager
async def schema_storage(url: str) -> AsyncIterator[SqlStorage]:
    """Storage on ``url`` with the schema made (no migration history); disposed afterwards."""
    storage = open_storage(url)
    try:
        await migrate.create_schema(storage)
        yield storage
    finally:
        await storage.dispose()


@contextmanager
def sql_database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh SQL database of ``kind`` ("sqlite": a file in ``tmp``; "postgres": a database of
    its own), as a URL for ``Settings(database_url=...)``."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'convocore.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url
