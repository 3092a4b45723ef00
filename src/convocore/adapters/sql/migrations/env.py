"""Alembic's environment. ``convocore.adapters.sql.migrate`` hands over an open connection (in
``config.attributes``); the alembic command line, given only a URL, gets an engine of its own."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from convocore.adapters.sql.storage import open_storage
from convocore.adapters.sql.tables import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters most things only by copying the table; batch mode writes that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_own_engine(url: str) -> None:
    storage = open_storage(url)
    try:
        await storage.run_sync(run_migrations)
    finally:
        await storage.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
given = context.config.attributes.get("connection")
if isinstance(given, Connection):
    run_migrations(given)
else:
    asyncio.run(run_on_own_engine(context.config.get_main_option("sqlalchemy.url") or ""))
