"""Schema migrations (Alembic), driven from code: upgrade, downgrade, and "is it current?".

The scripts live in ``migrations/`` inside the package, so an installed convocore can migrate
its database with no alembic.ini. Each run holds one transaction on one connection; on
PostgreSQL it first takes an advisory lock, so processes started together with ``--migrate``
take turns and all but the first find nothing to do. Within one process, runs take turns too:
Alembic keeps the running migration's context in module globals.
"""

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from convocore.adapters.sql.tables import metadata

SCRIPTS = "convocore.adapters.sql:migrations"
# The schema that create_all made before there were migrations is exactly this revision.
BASELINE = "0001"
BASELINE_TABLES = frozenset({"users", "sessions", "conversations", "members", "messages"})
_LOCK_KEY = 0x636F6E766F  # any constant; "convo"
_turns: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


T = TypeVar("T")


class SchemaError(RuntimeError):
    """The database's schema is not one this version can use as it is."""


class Database(Protocol):
    """What schema work needs of a storage (``SqliteStorage``, ``PostgresStorage``)."""

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        """``work`` on one of the database's connections, in one transaction."""


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")  # a module name mypy accepts
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    config.attributes["connection"] = connection
    return config


def head() -> str:
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert found is not None, "no migration scripts are packaged"
    return found


async def upgrade(database: Database, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision``; returns the revision it was at (None: empty). A
    database made by create_all before migrations existed is adopted as the baseline first."""
    async with _this_process_turn():
        return await database.run_sync(lambda connection: _upgrade(connection, revision))


async def downgrade(database: Database, revision: str = "base") -> None:
    async with _this_process_turn():
        await database.run_sync(lambda connection: _downgrade(connection, revision))


async def current(database: Database) -> str | None:
    return await database.run_sync(_current)


async def create_schema(database: Database) -> None:
    """Create whatever tables, indexes and triggers are missing, without migration history (tests)."""
    await database.run_sync(metadata.create_all)


async def drop_schema(database: Database) -> None:
    await database.run_sync(metadata.drop_all)


async def ensure_current(database: Database) -> None:
    """Raise ``SchemaError`` unless the schema is exactly at head."""
    found, wanted = await current(database), head()
    if found != wanted:
        state = f"at revision {found}" if found else "not migrated (no alembic_version table)"
        raise SchemaError(
            f"the database schema is {state}; this version needs revision {wanted}. "
            "Run `convocore migrate --database-url URL` first, or start with `convocore serve --migrate`."
        )


def _this_process_turn() -> asyncio.Lock:
    return _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())


def _upgrade(connection: Connection, revision: str) -> str | None:
    _take_turns(connection)
    config = alembic_config(connection=connection)
    if _predates_migrations(connection):
        command.stamp(config, BASELINE)
    found = _current(connection)
    command.upgrade(config, revision)
    return found


def _downgrade(connection: Connection, revision: str) -> None:
    _take_turns(connection)
    command.downgrade(alembic_config(connection=connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _take_turns(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":  # held until the transaction ends
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _predates_migrations(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not tables & BASELINE_TABLES:
        return False
    if tables >= BASELINE_TABLES:
        return True
    raise SchemaError(
        f"the database has some of convocore's tables ({', '.join(sorted(tables & BASELINE_TABLES))}) "
        "but not all, and no migration history; restore it or start from an empty database"
    )
