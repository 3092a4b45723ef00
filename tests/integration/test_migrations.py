"""Alembic migrations on SQLite and PostgreSQL: empty to head, the models match the scripts,
down and up again, adopting a database made by create_all, and the commands that run them."""

import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from convocore.adapters.sql import migrate
from convocore.adapters.sql.migrate import create_schema
from convocore.adapters.sql.storage import SqlStorage, open_storage
from convocore.adapters.sql.tables import POSTED_TRIGGER, metadata
from convocore.domain.users import User
from convocore.entrypoints.cli import main
from tests.support.server import ServerProcess, convocore_command

TABLES = {"users", "sessions", "retired_refresh_tokens", "conversations", "members", "messages"}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[SqlStorage]:
    storage = open_storage(database_url)
    yield storage
    await storage.dispose()


async def _sync(storage: SqlStorage, work: Any) -> Any:
    return await storage.run_sync(work)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata))


def _triggers(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        found = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        found = connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
    return set(found.scalars())


def _functions(connection: Connection) -> set[str]:
    """PostgreSQL's functions in the database's own schema (SQLite has none)."""
    if connection.dialect.name == "sqlite":
        return set()
    found = connection.execute(
        text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind = 'f'")
    )
    return set(found.scalars())


async def _store_a_user(storage: SqlStorage, username: str) -> None:
    async with storage() as uow:
        now = datetime.now(UTC)
        await uow.users.add(
            User(id=f"id-{username}", username=username, display_name=username, password_hash="x", created_at=now)
        )
        await uow.commit()


async def _username(storage: SqlStorage, username: str) -> str | None:
    async with storage() as uow:
        found = await uow.users.get_by_username(username)
    return found.username if found else None


async def test_an_empty_database_is_upgraded_to_head_and_works(storage: SqlStorage) -> None:
    assert await migrate.current(storage) is None
    await migrate.upgrade(storage)
    assert await migrate.current(storage) == migrate.head()
    assert await _sync(storage, _tables) == TABLES | {"alembic_version"}
    await _store_a_user(storage, "alice")
    assert await _username(storage, "ALICE") == "alice"


async def test_the_models_match_the_migrations(storage: SqlStorage) -> None:
    await migrate.upgrade(storage)
    assert await _sync(storage, _differences) == []
    assert await _sync(storage, _triggers) == {POSTED_TRIGGER}  # which compare_metadata does not see


async def test_revision_0002_adds_the_posted_trigger_and_takes_it_away(storage: SqlStorage) -> None:
    await migrate.upgrade(storage, "0001")
    assert await _sync(storage, _triggers) == set()
    await migrate.upgrade(storage)
    assert await _sync(storage, _triggers) == {POSTED_TRIGGER}
    expected_functions = {POSTED_TRIGGER} if storage.dialect_name == "postgresql" else set()
    assert await _sync(storage, _functions) == expected_functions
    await migrate.downgrade(storage, "0001")
    assert await _sync(storage, _triggers) == set()
    assert await _sync(storage, _functions) == set()  # PostgreSQL's trigger function goes with it


async def test_strings_compare_bytewise_on_postgresql_as_the_models_say(postgres_database: str) -> None:
    storage = open_storage(postgres_database)  # alembic's comparison does not look at collations
    query = text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND collation_name = 'C'"
    )
    try:
        await migrate.upgrade(storage)
        rows = await storage.run_sync(lambda connection: list(connection.execute(query)))
        bytewise = {(row.table_name, row.column_name) for row in rows}
        declared = {
            (table.name, column.name)
            for table in metadata.tables.values()
            for column in table.columns
            if 'COLLATE "C"' in str(column.type.compile(dialect=storage.engine.dialect))
        }
        assert declared and bytewise == declared
    finally:
        await storage.dispose()


async def test_downgrade_to_base_and_up_again(storage: SqlStorage) -> None:
    await migrate.upgrade(storage)
    await _store_a_user(storage, "gone")
    await migrate.downgrade(storage, "base")
    assert await migrate.current(storage) is None
    assert await _sync(storage, _tables) <= {"alembic_version"}
    await migrate.upgrade(storage)
    assert await migrate.current(storage) == migrate.head()
    assert await _sync(storage, _differences) == []
    assert await _username(storage, "gone") is None
    await _store_a_user(storage, "gone")  # the unique constraints are back and clash with nothing


async def test_a_database_made_by_create_all_is_adopted_with_its_data(storage: SqlStorage) -> None:
    await create_schema(storage)  # how every start made the schema before migrations
    await _store_a_user(storage, "veteran")
    with pytest.raises(migrate.SchemaError, match="convocore migrate"):
        await migrate.ensure_current(storage)
    await migrate.upgrade(storage)
    assert await migrate.current(storage) == migrate.head()
    assert await _username(storage, "veteran") == "veteran"
    assert await _sync(storage, _differences) == []
    assert await _sync(storage, _triggers) == {POSTED_TRIGGER}  # create_all made it; 0002 found it there
    await migrate.ensure_current(storage)


async def test_a_partial_schema_without_history_is_refused(storage: SqlStorage) -> None:
    await storage.run_sync(metadata.tables["users"].create)
    with pytest.raises(migrate.SchemaError, match="users"):
        await migrate.upgrade(storage)
    assert await migrate.current(storage) is None


def test_processes_migrating_at_once_take_turns(postgres_database: str, tmp_path: Path) -> None:
    command = [*convocore_command(), "migrate", "--database-url", postgres_database]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    outputs = [run.communicate(timeout=60)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert sum("upgraded from an empty database" in out for out in outputs) == 1, outputs
    assert sum("already at" in out for out in outputs) == 2, outputs


def test_the_migrate_command_upgrades_then_finds_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert f"upgraded from an empty database to {migrate.head()}" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url]) == 0
    assert f"already at {migrate.head()}" in capsys.readouterr().out


def test_the_migrate_command_fails_cleanly_on_an_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+asyncpg://someone:hunter2@127.0.0.1:9/nowhere"  # the discard port: nothing listens
    assert main(["migrate", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "convocore migrate" in err
    assert "hunter2" not in err


async def test_serve_refuses_an_unmigrated_postgresql_and_migrates_when_asked(
    tmp_path: Path, postgres_database: str
) -> None:
    refused = ServerProcess("--database-url", postgres_database, env={"CONVOCORE_MIGRATE": "0"}, cwd=tmp_path)
    with pytest.raises(RuntimeError, match="convocore migrate"):
        refused.start()
    server = ServerProcess(
        "--database-url", postgres_database, "--migrate", env={"CONVOCORE_MIGRATE": "0"}, cwd=tmp_path
    )
    server.start()
    try:
        storage = open_storage(postgres_database)
        assert await migrate.current(storage) == migrate.head()
        await storage.dispose()
    finally:
        server.stop()
