"""PostgreSQL's prebuilt statements run on asyncpg directly, compiled by SQLAlchemy once.

As ``sqlite_fast`` does for a SQLite file: SQLAlchemy's execution path around a statement (the
compiled-cache lookup, an execution context, parameter processing, the async adapter's cursor and
its greenlet hop, a cursor result) cost ~70 us of the process's CPU per statement on the
benchmark machine, as much again as asyncpg's own work for it, and a post runs three
(docs/performance.md, lever 54). Here a statement marked ``prebuilt`` is compiled once per set of
parameter names with SQLAlchemy's own asyncpg dialect; its SQL (casts included), parameter order
and each column type's bind and result processing run on the unit of work's asyncpg connection,
as a server-side prepared statement kept per connection. Rows come back as ``sqlite_fast.Result``,
which the repositories read the same way on both databases.

The transaction stays SQLAlchemy's: a unit's first statement here begins it on the
``AsyncConnection`` and has the asyncpg adapter issue BEGIN as its own first statement would
(``_start_transaction``, the one private name used), so statements that still go through
SQLAlchemy (the inbox, searches, expanding IN lists) join it, and commit, rollback and the pool's
reset are SQLAlchemy's as before. Errors become SQLAlchemy's exceptions (a broken constraint an
``IntegrityError``, a lost connection one with ``connection_invalidated``), so ``errors.py``
translates them unchanged; a connection found closed, or left mid-statement by a cancellation, is
invalidated as the unit closes, as SQLAlchemy does, and so is one whose BEGIN the server refused
(asyncpg would make its next BEGIN a SAVEPOINT), which SQLAlchemy does not catch.
"""

import time
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from convocore.adapters.sql.sqlite_fast import Plan, Plans, Result
from convocore.adapters.sql.timing import only_timers, timers_of

_STATEMENTS = "convocore_prepared"  # a pooled connection's prepared statements, in its info
# A prepared statement the schema changed under (a column's type, say): PostgreSQL refuses it.
_REPREPARE = (asyncpg.InvalidCachedStatementError, asyncpg.exceptions.OutdatedSchemaCacheError)


class PgConnection:
    """What one unit of work's pooled connection is under SQLAlchemy: the asyncpg adapter (its
    transaction), the asyncpg connection, and the statements prepared on it."""

    __slots__ = ("adapted", "driver", "spoiled", "statements")

    def __init__(self, adapted: Any, driver: asyncpg.Connection, statements: dict[str, Any]) -> None:
        self.adapted, self.driver, self.statements = adapted, driver, statements
        self.spoiled = False  # found closed, or a statement cancelled mid-way: not to be used again

    def holds_a_refused_begin(self) -> bool:
        """Whether asyncpg still calls a transaction its own that SQLAlchemy's adapter does not
        track: one whose BEGIN the server refused. asyncpg's ``Transaction.start`` makes itself
        the connection's top transaction before sending BEGIN and stays so when it fails, so the
        connection's next BEGIN would go out as a SAVEPOINT outside any transaction, and fail,
        on every unit after (on either path: SQLAlchemy's BEGIN is the same call)."""
        top = getattr(self.driver, "_top_xact", None)
        return top is not None and top is not self.adapted._transaction


class FastPostgres(Plans):
    """Compiled plans for one PostgreSQL engine (asyncpg), run on its pooled connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.dialect)
        self._engine = engine.sync_engine
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._timers = timers_of(self._engine)

    @staticmethod
    def usable(engine: AsyncEngine) -> bool:
        return engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"

    async def attach(self, connection: AsyncConnection) -> PgConnection | None:
        """The asyncpg side of a freshly checked-out connection; None (SQLAlchemy's path for
        every statement) if the adapter is not the one this module knows."""
        fairy = await connection.get_raw_connection()
        adapted, driver = fairy.dbapi_connection, fairy.driver_connection
        if not isinstance(driver, asyncpg.Connection) or not hasattr(adapted, "_start_transaction"):
            return None
        return PgConnection(adapted, driver, fairy.info.setdefault(_STATEMENTS, {}))

    async def run(self, connection: AsyncConnection, pg: PgConnection, plan: Plan, params: Mapping[str, Any]) -> Result:
        values = plan.values(params)
        engine, sync = self._engine, connection.sync_connection
        timed = only_timers(engine, self._timers)
        started = time.perf_counter()
        if not timed:
            engine.dispatch.before_cursor_execute(sync, None, plan.sql, values, None, False)
        try:
            return await self._run(connection, pg, plan, values)
        finally:
            if timed:
                elapsed = time.perf_counter() - started
                for timer in self._timers:
                    timer.observe(elapsed)
            else:
                engine.dispatch.after_cursor_execute(sync, None, plan.sql, values, None, False)

    async def _run(self, connection: AsyncConnection, pg: PgConnection, plan: Plan, values: list[Any]) -> Result:
        try:
            if pg.adapted._transaction is None:  # the unit's first statement since it began or committed
                if not connection.in_transaction():
                    await connection.begin()
                await pg.adapted._start_transaction()
            statement = pg.statements.get(plan.sql)
            if statement is None:
                statement = pg.statements[plan.sql] = await pg.driver.prepare(plan.sql)
            records = await statement.fetch(*values)
            return Result(plan, records, _rowcount(statement.get_statusmsg()))
        except Exception as error:
            lost = pg.driver.is_closed()
            if lost:
                pg.spoiled = True  # invalidated as the unit closes
            if isinstance(error, _REPREPARE):
                pg.statements.clear()  # the schema changed under them: prepare afresh
            raise self._as_sqlalchemy(error, plan.sql, values, lost=lost) from error
        except BaseException:
            # Cancelled mid-statement (a request whose client left, a timeout): asyncpg may be
            # left inside a BEGIN it sent (its transaction object failed, yet still the
            # connection's, so the next BEGIN would become a SAVEPOINT and the first transaction,
            # with its row locks, would never end) or cancelling a command. As SQLAlchemy does
            # for such exits, the connection is not used again: the unit invalidates it as it
            # closes (``_Pooled.close``), which closes it and so ends its transaction.
            pg.spoiled = True
            raise

    def _as_sqlalchemy(self, error: Exception, sql: str, values: list[Any], *, lost: bool) -> Exception:
        if isinstance(error, exc.SQLAlchemyError):
            return error
        if isinstance(error, self._dbapi_error):  # the adapter's own, from BEGIN
            return exc.DBAPIError.instance(sql, values, error, self._dbapi_error, connection_invalidated=lost)
        if isinstance(error, _REPREPARE):  # retryable: the next statement is prepared afresh
            return exc.OperationalError(sql, values, error, connection_invalidated=lost)
        if isinstance(error, asyncpg.PostgresError):
            sqlstate = str(getattr(error, "sqlstate", "") or "")
            kind = exc.IntegrityError if sqlstate.startswith("23") else exc.DBAPIError
            return kind(sql, values, error, connection_invalidated=lost)
        if lost or isinstance(error, OSError | asyncpg.InterfaceError):
            return exc.DBAPIError(sql, values, error, connection_invalidated=lost)
        return error  # a bug (a value asyncpg cannot encode, say): as it is


def _rowcount(status: str | None) -> int:
    """Rows a command touched, from its status (``INSERT 0 1``, ``UPDATE 3``, ``SELECT 5``)."""
    count = (status or "").rpartition(" ")[2]
    return int(count) if count.isdigit() else -1
