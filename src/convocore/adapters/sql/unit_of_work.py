"""Engines, schema, and the SQL unit of work: one transaction on one Core connection."""

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import aiosqlite
from sqlalchemy import Connection, Engine, Executable, event, exc, make_url, select, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from convocore.adapters.sql import sqlite_fast
from convocore.adapters.sql.errors import raise_translated, translate_errors, translated
from convocore.adapters.sql.pg_fast import FastPostgres, PgConnection
from convocore.adapters.sql.repositories import (
    Execute,
    Params,
    SqlAlchemyConversationRepository,
    SqlAlchemyMemberRepository,
    SqlAlchemyMessageRepository,
    SqlAlchemySessionRepository,
    SqlAlchemyUserRepository,
)
from convocore.adapters.sql.sqlite_fast import FastSqlite
from convocore.adapters.sql.tables import POSTED_TRIGGER, metadata
from convocore.adapters.sql.timing import timers_of
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
    engine = create_async_engine(parsed, pool_size=10, max_overflow=10, pool_timeout=30)
    ping_after_idle(engine, idle_s=_PING_AFTER_IDLE_S)
    return engine


# A pooled connection returned less than this long ago is handed out without a ping.
_PING_AFTER_IDLE_S = 1.0
_RETURNED_AT = "convocore_returned_at"


def ping_after_idle(engine: AsyncEngine, *, idle_s: float) -> None:
    """Ping a pooled connection at checkout only if it has been idle for ``idle_s`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout, and on asyncpg a ping is three round
    trips (BEGIN, an empty query, ROLLBACK): ~360 us of the process's CPU per unit of work on
    the benchmark machine, a fifth of a posted message's (docs/performance.md, lever 53). A
    connection used a moment ago was alive then, so only one that sat idle is pinged; a
    freshly opened one is not (as ``pool_pre_ping`` skips it). A dead one is replaced by raising
    ``DisconnectionError``, on which the pool opens a new connection (SQLAlchemy's documented
    custom pre-ping). What this gives up: a connection that dies within ``idle_s`` of its last
    use (the database restarted, the backend terminated) fails the statement of the unit that
    next takes it, with ``Unavailable`` (503, Retry-After), as a unit already running when the
    database went away fails, and is replaced. After a restart, that is once for each connection
    used in the second before it (at most the pool's 20)."""
    pool_target = engine.sync_engine

    def returned(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: the connection was invalidated
            record.info[_RETURNED_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # newly opened, or used a moment ago
        try:
            pool_target.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"a pooled connection failed its ping: {error!r}") from error

    event.listen(pool_target, "checkin", returned)
    event.listen(pool_target, "checkout", checked_out)


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
    if not _in_memory(database):  # SqliteUnitOfWork's connection, opened on first use
        _SQLITE_LINKS[engine] = _SqliteLink(engine, database, uri=uri, busy_timeout_ms=busy_timeout_ms)
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


def _in_memory(database: str) -> bool:
    return database == ":memory:" or "mode=memory" in database or database == ""


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
    if engine.dialect.name != "sqlite" or _in_memory(database):
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


class _Repositories:
    """The SQL repositories of a unit of work, all running their statements through ``execute``."""

    def __init__(self, execute: Execute, dialect: str, *, posted_trigger: bool = False) -> None:
        # Typed as the ports: the UnitOfWork protocol's attributes are mutable, hence invariant.
        self.users: UserRepository = SqlAlchemyUserRepository(execute)
        self.sessions: SessionRepository = SqlAlchemySessionRepository(execute)
        members = SqlAlchemyMemberRepository(execute)
        conversations = SqlAlchemyConversationRepository(execute, dialect, members)
        self.conversations: ConversationRepository = conversations
        self.members: MemberRepository = members
        trigger = (conversations, members) if posted_trigger else None
        self.messages: MessageRepository = SqlAlchemyMessageRepository(execute, dialect, trigger)


class SqlAlchemyUnitOfWork(_Repositories):
    """Holds one pooled connection for the whole block; leaving it rolls back what was not committed.

    The repositories run their statements through ``_Pooled.execute``, not a method of the unit
    itself, so a unit refers to its repositories but nothing they hold refers back: a unit of
    work is freed the moment it is done with, never left to the garbage collector (see
    ``SqliteUnitOfWork``)."""

    def __init__(self, *, engine: AsyncEngine, posted_trigger: bool = False, fast: FastPostgres | None = None) -> None:
        self._pooled = _Pooled(engine, fast)
        super().__init__(self._pooled.execute, engine.dialect.name, posted_trigger=posted_trigger)

    async def __aenter__(self) -> Self:
        await self._pooled.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._pooled.close(exc)

    async def commit(self) -> None:
        with translate_errors():
            await self._pooled.live().commit()


class _Pooled:
    """A ``SqlAlchemyUnitOfWork``'s connection, and the ``execute`` its repositories use. On
    PostgreSQL, the prebuilt statements run on the connection's asyncpg side (``pg_fast``)."""

    __slots__ = ("_connection", "_engine", "_fast", "_pg")

    def __init__(self, engine: AsyncEngine, fast: FastPostgres | None = None) -> None:
        self._engine = engine
        self._fast = fast
        self._connection: AsyncConnection | None = None
        self._pg: PgConnection | None = None

    async def connect(self) -> None:
        with translate_errors(connecting=True):
            self._connection = connection = await self._engine.connect()
            if self._fast is not None:
                try:
                    self._pg = await self._fast.attach(connection)
                except BaseException:
                    self._connection = None
                    await connection.close()
                    raise

    async def close(self, exc: BaseException | None) -> None:
        pg, self._pg = self._pg, None
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with translate_errors():
                if pg is not None and (pg.spoiled or (exc is not None and pg.holds_a_refused_begin())):
                    # not back into the pool
                    await connection.invalidate()
                await connection.close()  # which rolls back whatever was not committed
        except Unavailable:
            # A dead connection takes its transaction with it; report that only when no other
            # error is already on its way out, so the first cause is not masked.
            if exc is None:
                raise

    async def execute(self, statement: Executable, params: Params | None = None) -> Any:
        pg, fast = self._pg, self._fast
        if pg is not None and fast is not None and params is not None and sqlite_fast.is_prebuilt(statement):
            plan = fast.plan(statement, params)
            if plan is not None:
                with translate_errors():
                    return await fast.run(self.live(), pg, plan, params)
        with translate_errors():
            return await self.live().execute(statement, params)

    def live(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._connection


class _SqliteLink:
    """The one ``sqlite3`` connection a SQLite file's units of work share, and their turn at it.

    A unit of work on SQLAlchemy's async connection paid, on top of its statements, for a pool
    checkout and return (with a reset), a greenlet hop for BEGIN, COMMIT and close, and the
    async wrappers' bookkeeping: more than half of a post's CPU (docs/performance.md, lever 18).
    Here a unit of work waits for its turn (an ``asyncio.Lock``: one at a time, as the engine's
    one-connection pool made them), and BEGIN IMMEDIATE, the statements, COMMIT and ROLLBACK
    run on the connection inline, on the event loop's thread, as they did before through
    ``_InlineSqliteConnection``. The prebuilt statements run as ``sqlite_fast`` plans; any other
    (the inbox, searches, expanding IN lists) through a SQLAlchemy ``Connection`` of a private
    engine wrapped around the same ``sqlite3`` connection, whose cursor events are passed on to
    the app's engine, so its listeners (the statement-time metric) see every statement.

    The connection is the process's own, beside the engine's pool (which still serves the
    schema and migrations at startup): two connections to one file in WAL mode, as any two
    processes would be; SQLite's write lock keeps their writes apart. Only for a database in a
    file: an in-memory one exists per connection, so it keeps SQLAlchemy's path.
    """

    def __init__(self, engine: AsyncEngine, database: str, *, uri: bool, busy_timeout_ms: int) -> None:
        self._engine = engine.sync_engine
        self._database, self._uri, self._busy_timeout_ms = database, uri, busy_timeout_ms
        self._fast = FastSqlite(engine.dialect)
        self._timers = timers_of(self._engine)  # the statement timers its fast path calls directly
        self._turn = asyncio.Lock()
        self._raw: sqlite3.Connection | None = None
        # One cursor for every statement run here: ``Connection.execute`` makes a cursor per
        # statement (and, in Python 3.11, a weak reference to it in the connection's list), and
        # nothing here keeps a cursor past its statement (lever 49).
        self._cursor: sqlite3.Cursor | None = None
        self._other: Connection | None = None  # for statements that are not prebuilt
        self._batch: _Batch | None = None  # units committed into the open transaction, awaiting its COMMIT

    @property
    def raw(self) -> sqlite3.Connection:
        """The connection, opened on first use (as the pool opened its own)."""
        if self._raw is None:
            try:
                raw = sqlite3.connect(self._database, uri=self._uri, isolation_level=None, check_same_thread=False)
                _configure_sqlite(raw, self._busy_timeout_ms)
            except sqlite3.Error as error:
                raise Unavailable("the database is busy or unreachable; try again", retry_after=1) from error
            # Now, outside any transaction: SQLAlchemy's first connect ends with a ROLLBACK.
            self._other = self._private_connection(raw)
            self._cursor = raw.cursor()
            self._raw = raw
        return self._raw

    def _on(self, raw: sqlite3.Connection) -> sqlite3.Connection | sqlite3.Cursor:
        """Where a statement on ``raw`` runs: the link's cursor, while ``raw`` is its connection."""
        cursor = self._cursor
        return cursor if cursor is not None and raw is self._raw else raw

    async def take_turn(self) -> sqlite3.Connection:
        if self._turn.locked():  # else acquiring returns at once
            try:
                async with asyncio.timeout(_TURN_TIMEOUT_S):
                    await self._turn.acquire()
            except TimeoutError:
                raise Unavailable("the database is busy; try again", retry_after=1) from None
        else:
            await self._turn.acquire()
        try:
            return self.raw
        except BaseException:
            self._turn.release()
            raise

    def end_turn(self) -> None:
        """Let the next unit of work in."""
        self._turn.release()

    def begin(self, raw: sqlite3.Connection) -> "_Batch | None":
        """Open a unit's part of the transaction: BEGIN IMMEDIATE (the write lock up front, as
        _begin_immediate takes it on the engine's connections), or, while a batch awaits its
        COMMIT, a savepoint inside that transaction. Returns the batch joined that way."""
        try:
            if self._batch is not None:
                if raw.in_transaction:
                    sqlite_fast.execute(self._on(raw), "SAVEPOINT unit")
                    return self._batch
                # SQLite ended the batch's transaction itself (it rolls back on a full disk or
                # an I/O error): its units must hear that it failed, and this one starts afresh.
                batch, self._batch = self._batch, None
                batch.failed(Unavailable("the database lost a transaction; try again", retry_after=1))
            sqlite_fast.execute(self._on(raw), "BEGIN IMMEDIATE")
            return None
        except Exception as error:
            raise_translated(error)

    def roll_back(self, raw: sqlite3.Connection, joined: "_Batch | None") -> None:
        """Undo a unit's uncommitted part: to its savepoint inside a batch (the batch's other
        units keep theirs), else the whole transaction, which holds only this unit's work."""
        try:
            if joined is not None:
                if joined is self._batch:  # else that batch was committed or failed meanwhile
                    sqlite_fast.execute(self._on(raw), "ROLLBACK TO unit")
                    sqlite_fast.execute(self._on(raw), "RELEASE unit")
            elif raw.in_transaction:
                sqlite_fast.execute(self._on(raw), "ROLLBACK")
        except Exception as error:
            raise_translated(error)

    def commit(self, raw: sqlite3.Connection, joined: "_Batch | None") -> "_Batch":
        """Add a unit's work to the batch its COMMIT will carry, and return the batch. The
        batch commits once the loop's current round is over (or at its size cap), for every
        unit in it; a unit must not report its work done before the batch has."""
        try:
            if joined is not None:
                sqlite_fast.execute(self._on(raw), "RELEASE unit")
            batch = self._batch
            if batch is None:
                batch = self._batch = _Batch()
                asyncio.get_running_loop().call_soon(self._commit_batch)
            batch.size += 1
            if batch.size >= _BATCH_MAX:
                self._commit_now(raw)
            return batch
        except Exception as error:
            raise_translated(error)

    def _commit_batch(self) -> None:
        if self._batch is None:
            return  # committed at its size cap
        if self._turn.locked():  # a unit is between statements: commit once it is done
            asyncio.get_running_loop().call_soon(self._commit_batch)
            return
        raw = self._raw
        assert raw is not None  # close() fails and drops a pending batch
        self._commit_now(raw)

    def _commit_now(self, raw: sqlite3.Connection) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            sqlite_fast.execute(self._on(raw), "COMMIT")
        except Exception as error:
            try:
                if raw.in_transaction:
                    sqlite_fast.execute(self._on(raw), "ROLLBACK")
            except Exception:
                log.warning("rolling back a failed batch failed", exc_info=True)
            batch.failed(translated(error))
        else:
            batch.committed()

    def execute(self, raw: sqlite3.Connection, statement: Executable, params: Params | None) -> Any:
        try:
            if params is not None and sqlite_fast.is_prebuilt(statement):
                plan = self._fast.plan(statement, params)
                if plan is not None:
                    return self._fast.run(self._engine, self._on(raw), plan, params, self._timers)
            return self._sqlalchemy().execute(statement, params)
        except Exception as error:
            raise_translated(error)

    def ping(self) -> None:
        """``SELECT 1`` on the connection; inside another unit of work's transaction it reads nothing of it."""
        try:
            self.raw.execute("SELECT 1").fetchall()
        except sqlite3.Error as error:
            raise Unavailable(f"the database does not answer ({type(error).__name__})") from error

    def close(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:  # closing rolls its transaction back
            batch.failed(Unavailable("the database connection was closed; try again", retry_after=1))
        other, raw, self._other, self._raw, self._cursor = self._other, self._raw, None, None, None
        if other is not None:
            other.close()
            other.engine.dispose()
        if raw is not None:
            raw.close()

    def _sqlalchemy(self) -> Connection:
        if self._other is None:
            raise RuntimeError("the SQLite link is closed")
        return self._other

    def _private_connection(self, raw: sqlite3.Connection) -> Connection:
        # No reset on return and a no-op BEGIN (pysqlite leaves transactions to us): the private
        # engine runs statements inside the transaction this link began, and never ends it.
        private = sa_create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool, pool_reset_on_return=None)
        for name in ("before_cursor_execute", "after_cursor_execute", "handle_error"):
            event.listen(private, name, functools.partial(_pass_on, self._engine, name))
        return private.connect()


def _has_posted_trigger(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        query = "SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = to_regclass('messages')"
    else:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :name"
    return connection.execute(text(query), {"name": POSTED_TRIGGER}).first() is not None


def _pass_on(engine: Engine, name: str, *args: Any) -> None:
    getattr(engine.dispatch, name)(*args)


_TURN_TIMEOUT_S = 30  # as the pool's checkout timeout was
_BATCH_MAX = 256  # units per COMMIT at most


class _Batch:
    """Units of work whose changes one COMMIT carries, and its outcome, which each awaits."""

    __slots__ = ("_error", "_waiters", "done", "size")

    def __init__(self) -> None:
        self.size = 0
        self.done = False
        self._error: Exception | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def committed(self) -> None:
        self.done = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def failed(self, error: Exception) -> None:
        self.done, self._error = True, error
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error)

    async def wait(self) -> None:
        if not self.done:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        elif self._error is not None:
            raise self._error


class SqliteUnitOfWork(_Repositories):
    """A unit of work on a SQLite file's shared connection (``_SqliteLink``): the same
    repositories and statements as ``SqlAlchemyUnitOfWork``, run straight on ``sqlite3``.

    Group commit: ``commit`` adds the unit's changes to a batch and lets the next unit in; the
    batch's one COMMIT runs once the event loop's current round is over (docs/performance.md,
    lever 30), and ``commit`` returns only after it has, so nothing is acknowledged or
    published before it is durable. A unit that starts while a batch awaits its COMMIT works
    inside a savepoint of that transaction, so a failure undoes its own changes only; one that
    read there (even without writing) waits for the batch too, since it saw its rows, and fails
    with it if its COMMIT does. Statements after ``commit`` start a new transaction, as on
    SQLAlchemy's connection."""

    def __init__(self, link: _SqliteLink, *, posted_trigger: bool = False) -> None:
        # The repositories' statements go through ``_Turn.execute``: were it a method of the
        # unit, every unit would be a reference cycle (unit -> repository -> bound method ->
        # unit), freed only by the garbage collector. One per post, with its repositories and
        # the rows they keep, was most of what the collector found under load, and the full
        # collections that garbage brought on stopped the loop for up to 0.3 s
        # (docs/performance.md, lever 31).
        self._turn = _Turn(link)
        super().__init__(self._turn.execute, "sqlite", posted_trigger=posted_trigger)

    async def __aenter__(self) -> Self:
        await self._turn.enter()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._turn.exit(exc)

    async def commit(self) -> None:
        await self._turn.commit()


class _Turn:
    """A ``SqliteUnitOfWork``'s turn at the link and its part of the transaction."""

    __slots__ = ("_begun", "_entered", "_joined", "_link", "_raw", "_saw")

    def __init__(self, link: _SqliteLink) -> None:
        self._link = link
        self._raw: sqlite3.Connection | None = None  # while this unit has its turn
        self._entered = False
        self._begun = False  # its part of the transaction is open
        self._joined: _Batch | None = None  # the batch whose transaction it works inside
        self._saw: _Batch | None = None  # a batch whose uncommitted rows it may have read

    async def enter(self) -> None:
        self._raw = await self._link.take_turn()
        self._entered = True

    async def exit(self, exc: BaseException | None) -> None:
        self._entered = False
        try:
            self._end(roll_back=True)
        except Unavailable:
            if exc is None:  # as SqlAlchemyUnitOfWork: the first cause is the one to report
                raise
            return
        saw, self._saw = self._saw, None
        if saw is not None and exc is None:
            await saw.wait()

    async def commit(self) -> None:
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'async with'")
        raw = self._raw
        if raw is None or not self._begun:
            return  # nothing read or written since it began (or last committed)
        batch = self._link.commit(raw, self._joined)
        self._begun, self._joined, self._saw = False, None, None
        self._end(roll_back=False)
        if batch.done:  # this unit filled the batch, which committed at once: the units that
            await asyncio.sleep(0)  # committed into it before wake a round later, and go on first
        await batch.wait()

    async def execute(self, statement: Executable, params: Params | None = None) -> Any:
        raw = self._raw
        if raw is None:
            if not self._entered:
                raise RuntimeError("use the unit of work inside 'async with'")
            raw = self._raw = await self._link.take_turn()  # again, after a commit
        if not self._begun:
            self._joined = self._link.begin(raw)
            self._saw = self._joined
            self._begun = True
        return self._link.execute(raw, statement, params)

    def _end(self, *, roll_back: bool) -> None:
        """Undo what was not committed (when asked) and give up the turn."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            if roll_back and self._begun:
                self._begun = False
                self._link.roll_back(raw, self._joined)
        finally:
            self._joined = None
            self._link.end_turn()


# A SQLite file's link, one per engine, made with it: every factory on the engine takes turns at
# it, as they all queued for the engine's one pooled connection (two connections writing from
# one event loop would wait on each other's lock with the loop stopped). Keyed by the async
# engine, which the link does not refer to (it keeps the sync one), so an engine dropped takes
# its link, and the link's connection, with it.
_SQLITE_LINKS: "weakref.WeakKeyDictionary[AsyncEngine, _SqliteLink]" = weakref.WeakKeyDictionary()


class SqlAlchemyUnitOfWorkFactory:
    """Units of work on ``engine``: for a SQLite file, ``SqliteUnitOfWork`` on one shared
    ``sqlite3`` connection; for anything else (PostgreSQL, in-memory SQLite), ``SqlAlchemyUnitOfWork``."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self.engine = engine
        self._link = _SQLITE_LINKS.get(engine)
        self._fast = FastPostgres(engine) if FastPostgres.usable(engine) else None
        self._posted_trigger = False  # the schema's tables.POSTED_TRIGGER, once find_triggers found it

    def __call__(self) -> SqlAlchemyUnitOfWork | SqliteUnitOfWork:
        if self._link is not None:
            return SqliteUnitOfWork(self._link, posted_trigger=self._posted_trigger)
        return SqlAlchemyUnitOfWork(engine=self.engine, posted_trigger=self._posted_trigger, fast=self._fast)

    async def find_triggers(self) -> None:
        """Look for ``tables.POSTED_TRIGGER``, once the schema is in place (the app does, after
        migrating). Until then, and without it, a post's saves write what the trigger would
        have."""
        with translate_errors(connecting=True):
            async with self.engine.connect() as connection:
                self._posted_trigger = await connection.run_sync(_has_posted_trigger)

    def sqlite_connection(self) -> sqlite3.Connection | None:
        """The ``sqlite3`` connection this factory's units of work run on (a SQLite file's)."""
        return self._link.raw if self._link is not None else None

    def close(self) -> None:
        """Close a SQLite file's connection (reopened if a unit of work is asked for again);
        the engine is its owner's to dispose of."""
        if self._link is not None:
            self._link.close()

    async def ping(self) -> None:
        """One trivial query on a pooled connection (a fresh one when the pooled one is dead)."""
        if self._link is not None:
            self._link.ping()
            return
        try:
            async with self.engine.connect() as connection:
                await connection.execute(select(1))
        except (exc.SQLAlchemyError, OSError) as error:
            cause = error.orig if isinstance(error, exc.DBAPIError) else error
            raise Unavailable(f"the database does not answer ({type(cause).__name__})") from error
