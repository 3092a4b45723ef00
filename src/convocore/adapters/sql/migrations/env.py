"""Alembic's environment. ``convocore.adapters.sql.migrate`` hands over an open connection (in
``config.attributes``); the alembic command line, given only a URL, gets an engine of its own."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from convocore.adapters.sql.tables import metadata
from convocore.adapters.sql.unit_of_work import create_engine


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
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
given = context.config.attributes.get("connection")
if isinstance(given, Connection):
    run_migrations(given)
else:
    asyncio.run(run_on_own_engine(context.config.get_main_option("sqlalchemy.url") or ""))
