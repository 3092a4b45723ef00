"""PostgreSQL storage (the ``postgres`` extra: asyncpg, SQLAlchemy's asyncio): each unit of work
holds one pooled connection and runs its statements, and its transaction, on the asyncpg
connection under it (``get_raw_connection().driver_connection``)."""

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

import asyncpg
from sqlalchemy import Connection, Executable, event, exc, make_url, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from convocore.adapters.sql import migrate
from convocore.adapters.sql.engine import Observe
from convocore.adapters.sql.errors import busy, conflict, translate_errors
from convocore.adapters.sql.repositories import Repositories
from convocore.adapters.sql.statements import Params, Plans, Result, rowcount_of
from convocore.domain.errors import Unavailable

T = TypeVar("T")
# A pooled connection returned less than this long ago is handed out without a ping.
PING_AFTER_IDLE_S = 1.0
_RETURNED_AT = "convocore_returned_at"
# SQLSTATE classes worth a retry: connection exception, transaction rollback (deadlock,
# serialization failure), insufficient resources, operator intervention (shutdown).
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")
# A prepared statement the schema changed under (a column's type, say): asyncpg prepares it afresh next time.
_REPREPARE = (asyncpg.InvalidCachedStatementError, asyncpg.exceptions.OutdatedSchemaCacheError)


def postgres_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, ping_after_idle_s: float = PING_AFTER_IDLE_S
) -> AsyncEngine:
    engine = create_async_engine(
        make_url(url).set(drivername="postgresql+asyncpg"),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=30,
    )
    ping_after_idle(engine, idle_s=ping_after_idle_s)
    return engine


def ping_after_idle(engine: AsyncEngine, *, idle_s: float) -> None:
    """Ping a pooled connection at checkout only if it sat idle for ``idle_s`` or more.

    ``pool_pre_ping`` pings at every checkout, three round trips on asyncpg; a connection used a
    moment ago was alive then. A dead one is replaced by raising ``DisconnectionError`` (the
    pool's documented custom pre-ping). What it gives up: a connection that dies within
    ``idle_s`` of its last use fails its next unit with ``Unavailable`` (503, Retry-After), and
    is replaced, as a unit already running when the database went away fails."""
    target = engine.sync_engine

    def returned(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: the connection was invalidated
            record.info[_RETURNED_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # newly opened, or used a moment ago
        try:
            target.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"a pooled connection failed its ping: {error!r}") from error

    event.listen(target, "checkin", returned)
    event.listen(target, "checkout", checked_out)


def from_postgres(error: BaseException, *, lost: bool) -> BaseException:
    """What an asyncpg error means; ``lost``: the connection is closed now."""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        return conflict(error.constraint_name, str(error))
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    if (
        lost
        or sqlstate.startswith(_TRANSIENT_SQLSTATES)
        or isinstance(error, (*_REPREPARE, asyncpg.InterfaceError, OSError, TimeoutError))
    ):
        return busy()
    return error


class PostgresStorage:
    """A PostgreSQL database; calling it gives a unit of work. ``migrate``: upgrade the schema as
    it starts, else only check that it is current (a shared database changes when asked)."""

    dialect_name = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = False,
        pool_size: int = 10,
        max_overflow: int = 10,
        ping_after_idle_s: float = PING_AFTER_IDLE_S,
    ) -> None:
        self.engine = postgres_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, ping_after_idle_s=ping_after_idle_s
        )
        self.observers: list[Observe] = []
        self._plans = Plans(self.engine.dialect)
        self._migrate = migrate

    def __call__(self) -> "PostgresUnitOfWork":
        return PostgresUnitOfWork(_Session(self.engine, self._plans, self.observers))

    def time_statements(self, observe: Observe) -> None:
        if observe not in self.observers:
            self.observers.append(observe)

    async def start(self) -> None:
        if self._migrate:
            await migrate.upgrade(self)
        else:
            await migrate.ensure_current(self)

    async def stop(self) -> None:
        await self.dispose()

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """One trivial query on a pooled connection (a fresh one when the pooled one is dead)."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(select(1))
        except (exc.SQLAlchemyError, OSError) as error:
            cause = error.orig if isinstance(error, exc.DBAPIError) else error
            raise Unavailable(f"the database does not answer ({type(cause).__name__})") from error

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        """``work`` on a connection of the engine, in one transaction (the schema, migrations)."""
        with translate_errors(connecting=True):
            connection = await self.engine.connect()
        try:
            with translate_errors():
                async with connection.begin():
                    return await connection.run_sync(work)
        finally:
            await connection.close()


class PostgresUnitOfWork(Repositories):
    def __init__(self, session: "_Session") -> None:
        self._session = session  # the repositories hold its ``execute``; nothing refers back to the unit
        super().__init__(session.execute, "postgresql")

    async def __aenter__(self) -> Self:
        await self._session.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._session.close(exc)

    async def commit(self) -> None:
        await self._session.commit()


class _Session:
    """A unit of work's connection and transaction. The transaction begins with the unit's
    first statement. A connection that failed mid-way (closed, a BEGIN refused, a statement
    cancelled by a request whose client left) is not trusted again: it is invalidated as the
    unit closes, which closes it and so ends whatever it was doing."""

    __slots__ = ("_connection", "_driver", "_engine", "_observers", "_plans", "_spoiled", "_transaction")

    def __init__(self, engine: AsyncEngine, plans: Plans, observers: list[Observe]) -> None:
        self._engine, self._plans, self._observers = engine, plans, observers
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # asyncpg.Connection
        self._transaction: Any = None  # asyncpg's Transaction, while one is open
        self._spoiled = False

    async def open(self) -> None:
        with translate_errors(connecting=True):
            connection = await self._engine.connect()
            try:
                pooled = await connection.get_raw_connection()
            except BaseException:
                await connection.close()
                raise
        self._connection, self._driver = connection, pooled.driver_connection

    async def execute(self, statement: Executable, params: Params | None = None) -> Result:
        driver = self._driver
        if driver is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        plan, values = self._plans.plan(statement, params or {})
        args = plan.values(values)
        if self._transaction is None:
            await self._begin(driver)
        observers = self._observers
        started = time.perf_counter() if observers else 0.0
        try:
            if plan.names:
                records = await driver.fetch(plan.sql, *args)
                return Result(plan, records, len(records))
            return Result(plan, [], rowcount_of(await driver.execute(plan.sql, *args)))
        except Exception as error:
            self._raise(error)
        except BaseException:
            self._spoiled = True  # cancelled mid-statement: where the protocol stands is unknown
            raise
        finally:
            if observers:
                elapsed = time.perf_counter() - started
                for observe in observers:
                    observe(elapsed)

    async def _begin(self, driver: Any) -> None:
        try:
            transaction = driver.transaction()
            await transaction.start()
        except BaseException as error:
            # asyncpg still counts a refused BEGIN as its open transaction (the next would be a
            # SAVEPOINT): the connection is not used again.
            self._spoiled = True
            if isinstance(error, Exception):
                self._raise(error)
            raise
        self._transaction = transaction

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        try:
            await transaction.commit()
        except Exception as error:
            self._spoiled = True
            self._raise(error)
        except BaseException:
            self._spoiled = True
            raise

    async def close(self, exc: BaseException | None) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        transaction, self._transaction = self._transaction, None
        if connection is None:
            return
        try:
            if transaction is not None and not self._spoiled:
                try:
                    await transaction.rollback()
                except Exception:
                    self._spoiled = True
            with translate_errors():
                if self._spoiled:
                    await connection.invalidate()  # not back into the pool
                await connection.close()
        except Unavailable:
            # A dead connection takes its transaction with it; report that only when no other
            # error is already on its way out, so the first cause is not masked.
            if exc is None:
                raise

    def _raise(self, error: Exception) -> NoReturn:
        """Raise what ``error`` means for the caller (from it), or ``error`` itself (a bug)."""
        lost = self._driver is None or self._driver.is_closed()
        if lost:
            self._spoiled = True
        translated = from_postgres(error, lost=lost)
        if translated is error:
            raise error
        raise translated from error
