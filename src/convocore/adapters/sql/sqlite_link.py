"""The one ``sqlite3`` connection a SQLite database's units of work share, their turns at it,
and group commit.

Units of work take turns (an ``asyncio.Lock``: one at a time, which is what makes seq allocation
race-free without ``SELECT ... FOR UPDATE``) and run BEGIN IMMEDIATE, their statements, COMMIT
and ROLLBACK inline on the event loop's thread.

Group commit: a unit's ``commit`` adds its changes to a batch and lets the next unit in; the
batch's one COMMIT runs once the event loop's current round is over (or at its size cap), and
each unit returns from ``commit`` only after it, so nothing is acknowledged or published before
it is durable. A unit that starts while a batch awaits its COMMIT works inside a savepoint of
that transaction, so a failure undoes its own changes only.
"""

import asyncio
import logging
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, Executable

from convocore.adapters.sql.engine import Observe
from convocore.adapters.sql.errors import raise_for_sqlite
from convocore.adapters.sql.statements import Params, Plans, Result
from convocore.domain.errors import Unavailable

log = logging.getLogger(__name__)

TURN_TIMEOUT_S = 30.0  # as a pool's checkout timeout
BATCH_MAX = 256  # units per COMMIT at most


class Batch:
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


class SqliteLink:
    """The connection (from the engine's pool, held open) and whose turn it is."""

    def __init__(self, engine: Engine, observers: list[Observe], *, turn_timeout_s: float = TURN_TIMEOUT_S) -> None:
        self._engine = engine
        self._turn_timeout_s = turn_timeout_s
        self._plans = Plans(engine.dialect)
        self._observers = observers
        self._turn = asyncio.Lock()
        self._pooled: Any = None  # the pool's proxy, returned on close
        self._raw: sqlite3.Connection | None = None
        # One cursor for every statement: ``Connection.execute`` would make one per statement.
        self._cursor: sqlite3.Cursor | None = None
        self._batch: Batch | None = None  # units committed into the open transaction, awaiting its COMMIT

    @property
    def raw(self) -> sqlite3.Connection:
        """The connection, taken from the pool on first use."""
        if self._raw is None:
            try:
                pooled = self._engine.raw_connection()
            except Exception as error:
                raise Unavailable("the database is busy or unreachable; try again", retry_after=1) from error
            raw = pooled.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            self._pooled, self._raw, self._cursor = pooled, raw, raw.cursor()
        return self._raw

    async def take_turn(self) -> sqlite3.Connection:
        if self._turn.locked():  # else acquiring returns at once
            try:
                async with asyncio.timeout(self._turn_timeout_s):
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
        self._turn.release()

    def begin(self, raw: sqlite3.Connection) -> Batch | None:
        """Open a unit's part of the transaction: BEGIN IMMEDIATE, or, while a batch awaits its
        COMMIT, a savepoint inside that transaction. Returns the batch joined that way."""
        if self._batch is not None:
            if raw.in_transaction:
                self._run("SAVEPOINT unit")
                return self._batch
            # SQLite ended the batch's transaction itself (it rolls back on a full disk or an
            # I/O error): its units must hear that it failed, and this one starts afresh.
            batch, self._batch = self._batch, None
            batch.failed(Unavailable("the database lost a transaction; try again", retry_after=1))
        self._run("BEGIN IMMEDIATE")
        return None

    def roll_back(self, raw: sqlite3.Connection, joined: Batch | None) -> None:
        """Undo a unit's uncommitted part: to its savepoint inside a batch (the batch's other
        units keep theirs), else the whole transaction, which holds only this unit's work."""
        if joined is not None:
            if joined is self._batch:  # else that batch was committed or failed meanwhile
                self._run("ROLLBACK TO unit")
                self._run("RELEASE unit")
        elif raw.in_transaction:
            self._run("ROLLBACK")

    def commit(self, raw: sqlite3.Connection, joined: Batch | None) -> Batch:
        """Add a unit's work to the batch its COMMIT will carry, and return the batch."""
        if joined is not None:
            self._run("RELEASE unit")
        batch = self._batch
        if batch is None:
            batch = self._batch = Batch()
            asyncio.get_running_loop().call_soon(self._commit_batch)
        batch.size += 1
        if batch.size >= BATCH_MAX:
            self._commit_now(raw)
        return batch

    def _commit_batch(self) -> None:
        if self._batch is None:
            return  # committed at its size cap
        if self._turn.locked():  # a unit is between statements: commit once it is done
            asyncio.get_running_loop().call_soon(self._commit_batch)
            return
        assert self._raw is not None  # close() fails and drops a pending batch
        self._commit_now(self._raw)

    def _commit_now(self, raw: sqlite3.Connection) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            self._run("COMMIT")
        except Exception as error:
            try:
                if raw.in_transaction:
                    self._run("ROLLBACK")
            except Exception:
                log.warning("rolling back a failed batch failed", exc_info=True)
            batch.failed(error)
        else:
            batch.committed()

    def execute(self, statement: Executable, params: Params | None) -> Result:
        plan, values = self._plans.plan(statement, params or {})
        cursor = self._cursor
        assert cursor is not None
        observers = self._observers
        started = time.perf_counter() if observers else 0.0
        try:
            cursor.execute(plan.sql, plan.values(values))
            result = Result(plan, cursor.fetchall() if plan.names else [], cursor.rowcount)
        except sqlite3.Error as error:
            raise_for_sqlite(error)
        finally:
            if observers:
                elapsed = time.perf_counter() - started
                for observe in observers:
                    observe(elapsed)
        return result

    def _run(self, sql: str) -> None:
        """A transaction-control statement; its failure as ``execute``'s would be."""
        assert self._cursor is not None
        try:
            self._cursor.execute(sql)
        except sqlite3.Error as error:
            raise_for_sqlite(error)

    def ping(self) -> None:
        """``SELECT 1``; inside another unit of work's transaction it reads nothing of it."""
        try:
            self.raw.execute("SELECT 1").fetchall()
        except sqlite3.Error as error:
            raise Unavailable(f"the database does not answer ({type(error).__name__})") from error

    def close(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:  # closing rolls its transaction back
            batch.failed(Unavailable("the database connection was closed; try again", retry_after=1))
        pooled, self._pooled, self._raw, self._cursor = self._pooled, None, None, None
        if pooled is not None:
            pooled.close()  # back to the pool, which rolls back what is open
