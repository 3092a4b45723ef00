"""Engines, schema, and the SQL unit of work: one transaction on one Core connection."""

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import aiosqlite
from sqlalchemy import Connection, Executable, event, exc, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from convocore.adapters.sql import sqlite_fast
from convocore.adapters.sql.errors import translate_errors
from convocore.adapters.sql.repositories import (
    Params,
    SqlAlchemyConversationRepository,
    SqlAlchemyMemberRepository,
    SqlAlchemyMessageRepository,
    SqlAlchemySessionRepository,
    SqlAlchemyUserRepository,
)
from convocore.adapters.sql.sqlite_fast import FastSqlite
from convocore.adapters.sql.tables import metadata
from convocore.application.ports import (
    ConversationRepository,
    MemberRepository,
    MessageRepository,
    SessionRepository,
    UserRepository,
)
from convocore.domain.errors import Unavailable

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# wal_autocheckpoint: the serving connection checkpoints by itself (on the loop, after a commit)
# only once the WAL reaches 4,000 pages (16 MB); below that, ``wal_checkpoints`` does it from a
# thread. Without that thread (a one-off command, a test), it is SQLite's own rule with a larger N.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=4000")
log = logging.getLogger(__name__)


def create_engine(url: str, *, sqlite_busy_timeout_ms: int = 5000) -> AsyncEngine:
    """An engine for ``url``; plain ``sqlite:`` and ``postgresql:`` URLs get the async drivers."""
    parsed = make_url(url)
    parsed = parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms=sqlite_busy_timeout_ms)
    return create_async_engine(parsed, pool_size=10, max_overflow=10, pool_timeout=30, pool_pre_ping=True)


def _sqlite_engine(url: URL, *, busy_timeout_ms: int) -> AsyncEngine:
    # Exactly one connection per process, so units of work queue for it and run one at a time.
    # That is what makes seq allocation race-free here: SQLite has no SELECT ... FOR UPDATE, but
    # nothing can interleave with a transaction that has the only connection. (It costs nothing:
    # SQLite admits one writer at a time anyway.) An in-memory database gets the same pool rather
    # than StaticPool, which would hand the one connection to two units of work at once; a pooled
    # connection is never recycled, so the database lives as long as the engine.
    database, uri = _sqlite_target(url)

    async def connect() -> aiosqlite.Connection:
        connector = lambda: sqlite3.connect(database, uri=uri, check_same_thread=False)  # noqa: E731
        return await _InlineSqliteConnection(connector, iter_chunk_size=64)

    engine = create_async_engine(
        url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=30, async_creator=connect
    )
    event.listen(engine.sync_engine, "connect", lambda conn, _: _configure_sqlite(conn, busy_timeout_ms))
    event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


class _InlineSqliteConnection(aiosqlite.Connection):
    """aiosqlite that runs each statement on the calling (event loop) thread.

    Stock aiosqlite hands every statement to a worker thread and waits for the loop to be woken
    with the result. For SQLite's microsecond statements that hop was most of the cost (measured:
    a post took 2.9 ms of CPU through the thread and 1.0 ms inline; see docs/performance.md).
    Running inline is safe here because the engine has exactly one connection, so at most one
    statement runs at a time, and SQLite in WAL mode does not wait on readers. What it gives up:
    while another *process* holds the write lock (a ``convocore migrate`` run, say), waiting for it
    (``busy_timeout``) stalls this process's loop instead of one task. Opening and closing still
    go through aiosqlite's thread.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _configure_sqlite(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    # Stop the sqlite3 module from starting transactions itself (it would skip BEGIN before
    # SELECTs, so reads would not share the transaction); _begin_immediate does it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (*_SQLITE_PRAGMAS, f"busy_timeout={int(busy_timeout_ms)}"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_target(url: URL) -> tuple[str, bool]:
    """What ``sqlite3.connect`` takes for a SQLite URL: the database, and whether it is a URI."""
    return url.database or ":memory:", str(url.query.get("uri", "")).lower() in ("true", "1")


def _begin_immediate(connection: Connection) -> None:
    # Take the write lock up front, which carries the one-at-a-time rule to other processes
    # sharing the file: they wait (busy_timeout) instead of failing half-way with a stale snapshot.
    raw = _inline_sqlite(connection.connection.driver_connection)
    if raw is None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:  # straight on sqlite3, as sqlite_fast does: a tenth of the cost of exec_driver_sql
        sqlite_fast.execute(raw, "BEGIN IMMEDIATE")


def _inline_sqlite(driver_connection: Any) -> sqlite3.Connection | None:
    """The sqlite3 connection under a driver connection, when its statements run on this thread."""
    return driver_connection._connection if isinstance(driver_connection, _InlineSqliteConnection) else None


@contextlib.contextmanager
def wal_checkpoints(engine: AsyncEngine, *, interval_s: float = 0.25) -> Iterator["WalCheckpointer | None"]:
    """Checkpoint a SQLite file's WAL from a thread for as long as the block runs (nothing to do
    for another database or an in-memory one)."""
    database, uri = _sqlite_target(engine.url)
    if engine.dialect.name != "sqlite" or database == ":memory:" or "mode=memory" in database:
        yield None
        return
    checkpointer = WalCheckpointer(database, uri=uri, interval_s=interval_s)
    checkpointer.start()
    try:
        yield checkpointer
    finally:
        checkpointer.stop()


class WalCheckpointer:
    """Copies committed pages from the WAL into the database file, on a thread of its own.

    SQLite's automatic checkpoint runs in the connection that commits, which here is the event
    loop's (``_InlineSqliteConnection``): every 1,000 pages, a commit also wrote them back and
    waited for two fsyncs, and every socket and request of the process waited with it (~23 ms a
    time on a slow benchmark machine, about once a second under a 100x10 fan-out; see
    docs/performance.md, lever 14). This thread's own connection runs ``PRAGMA
    wal_checkpoint(PASSIVE)`` a few times a second instead; the sqlite3 module lets go of the GIL
    while SQLite works, so the loop goes on. PASSIVE never waits for or blocks a writer, and
    durability is unchanged (a commit is in the WAL either way). The WAL starts over from its
    beginning when a write finds it fully copied; under writes so steady that it never is, it
    reaches the serving connection's own threshold (``wal_autocheckpoint``) and that one
    checkpoint runs on the loop as before, with most pages already copied.
    """

    def __init__(self, database: str, *, uri: bool = False, interval_s: float = 0.25) -> None:
        self._database, self._uri, self._interval_s = database, uri, interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="convocore-wal-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = sqlite3.connect(self._database, uri=self._uri, isolation_level=None)
        try:
            while not self._stopping.wait(self._interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as error:  # a locked or missing file now is not fatal later
                    log.warning("WAL checkpoint failed: %s", error)
        finally:
            connection.close()


async def create_schema(engine: AsyncEngine) -> None:
    """Create whatever tables and indexes are missing; safe to run on every start."""
    with translate_errors():
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)


async def drop_schema(engine: AsyncEngine) -> None:
    with translate_errors():
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)


class SqlAlchemyUnitOfWork:
    """Holds one pooled connection for the whole block; leaving it rolls back what was not committed."""

    def __init__(self, *, engine: AsyncEngine, fast: FastSqlite | None = None) -> None:
        self._engine, self._fast = engine, fast
        self._connection: AsyncConnection | None = None
        self._raw: sqlite3.Connection | bool | None = None
        # Typed as the ports: the UnitOfWork protocol's attributes are mutable, hence invariant.
        self.users: UserRepository = SqlAlchemyUserRepository(self._execute)
        self.sessions: SessionRepository = SqlAlchemySessionRepository(self._execute)
        self.conversations: ConversationRepository = SqlAlchemyConversationRepository(self._execute)
        self.members: MemberRepository = SqlAlchemyMemberRepository(self._execute)
        self.messages: MessageRepository = SqlAlchemyMessageRepository(self._execute)

    async def __aenter__(self) -> Self:
        with translate_errors(connecting=True):
            self._connection = await self._engine.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        self._raw = None
        if connection is None:
            return
        try:
            with translate_errors():
                await connection.close()  # which rolls back whatever was not committed
        except Unavailable:
            # A dead connection takes its transaction with it; report that only when no other
            # error is already on its way out, so the first cause is not masked.
            if exc is None:
                raise

    async def commit(self) -> None:
        with translate_errors():
            await self._live().commit()

    async def _execute(self, statement: Executable, params: Params | None = None) -> Any:
        with translate_errors():
            connection = self._live()
            if self._fast is not None and params is not None and sqlite_fast.is_prebuilt(statement):
                plan = self._fast.plan(statement, params)
                raw = await self._raw_sqlite(connection) if plan is not None else None
                if plan is not None and raw is not None:
                    if not connection.in_transaction():
                        await connection.begin()  # BEGIN IMMEDIATE, as for any statement
                    return self._fast.run(connection.sync_connection, raw, plan, params)  # type: ignore[arg-type]
            return await connection.execute(statement, params)

    async def _raw_sqlite(self, connection: AsyncConnection) -> sqlite3.Connection | None:
        """The sqlite3 connection underneath, when its statements run on this thread."""
        if self._raw is None:
            raw = _inline_sqlite((await connection.get_raw_connection()).driver_connection)
            self._raw = raw if raw is not None else False
        return self._raw if isinstance(self._raw, sqlite3.Connection) else None

    def _live(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._connection


class SqlAlchemyUnitOfWorkFactory:
    def __init__(self, *, engine: AsyncEngine) -> None:
        self.engine = engine
        self._fast = FastSqlite(engine.dialect) if engine.dialect.name == "sqlite" else None

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(engine=self.engine, fast=self._fast)

    async def ping(self) -> None:
        """One trivial query on a pooled connection (a fresh one when the pooled one is dead)."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(select(1))
        except (exc.SQLAlchemyError, OSError) as error:
            cause = error.orig if isinstance(error, exc.DBAPIError) else error
            raise Unavailable(f"the database does not answer ({type(cause).__name__})") from error
