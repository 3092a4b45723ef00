"""SQLite storage: its units of work on the one shared ``sqlite3`` connection (``SqliteLink``),
and the database's lifetime (schema upgraded on every start, WAL checkpoints off the loop)."""

import asyncio
import sqlite3
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from sqlalchemy import Connection, Executable

from convocore.adapters.sql import migrate
from convocore.adapters.sql.engine import Observe, WalCheckpointer, sqlite_engine, sqlite_file
from convocore.adapters.sql.errors import translate_errors
from convocore.adapters.sql.repositories import Repositories
from convocore.adapters.sql.sqlite_link import TURN_TIMEOUT_S, Batch, SqliteLink
from convocore.adapters.sql.statements import Params, Result
from convocore.domain.errors import Unavailable

T = TypeVar("T")


class SqliteStorage:
    """A SQLite database, in a file or in memory; calling it gives a unit of work."""

    dialect_name = "sqlite"

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 5000,
        synchronous: str = "full",
        turn_timeout_s: float = TURN_TIMEOUT_S,
    ) -> None:
        """``busy_timeout_ms``: how long a write waits for another process's lock on the file;
        ``synchronous``: ``full`` (a commit is on disk) or ``normal`` (it survives the process's
        death, not a power cut); ``turn_timeout_s``: how long a unit of work waits for its turn."""
        self.engine = sqlite_engine(url, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
        self.observers: list[Observe] = []
        self._link = SqliteLink(self.engine, self.observers, turn_timeout_s=turn_timeout_s)
        self._checkpointer: WalCheckpointer | None = None

    def __call__(self) -> "SqliteUnitOfWork":
        return SqliteUnitOfWork(self._link)

    def time_statements(self, observe: Observe) -> None:
        """Hand how long each statement of a unit of work took to ``observe`` (once, however often asked)."""
        if observe not in self.observers:
            self.observers.append(observe)

    async def start(self) -> None:
        """The schema follows the code by itself (the laptop path needs no migrate step); a
        file's WAL is checkpointed from a thread while the storage serves."""
        await migrate.upgrade(self)
        target = sqlite_file(self.engine.url)
        if target is not None and self._checkpointer is None:
            self._checkpointer = WalCheckpointer(target[0], uri=target[1])
            self._checkpointer.start()

    async def stop(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        await self.dispose()

    async def dispose(self) -> None:
        """Close the connections (a unit of work asked for later opens them again)."""
        self._link.close()
        self.engine.dispose()

    async def ping(self) -> None:
        self._link.ping()

    async def run_sync(self, work: Callable[[Connection], T]) -> T:
        """``work`` on a connection of the engine, in one transaction (the schema, migrations).
        Inline: SQLite's schema work is short, and done before anything is served."""
        with translate_errors(connecting=True):
            connection = self.engine.connect()
        with translate_errors(), connection, connection.begin():
            return work(connection)

    def sqlite_connection(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection the units of work run on."""
        return self._link.raw


class SqliteUnitOfWork(Repositories):
    """One unit's turn at the link and its part of the transaction. Statements after ``commit``
    start a new transaction."""

    def __init__(self, link: SqliteLink) -> None:
        # The repositories run statements through ``_Turn.execute``, not a method of the unit, so
        # nothing they hold refers back to it: a unit is freed by reference counting the moment
        # it is done with, never left for the garbage collector's full collections.
        self._turn = _Turn(link)
        super().__init__(self._turn.execute, "sqlite")

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
    __slots__ = ("_begun", "_entered", "_joined", "_link", "_raw", "_saw")

    def __init__(self, link: SqliteLink) -> None:
        self._link = link
        self._raw: sqlite3.Connection | None = None  # while this unit has its turn
        self._entered = False
        self._begun = False  # its part of the transaction is open
        self._joined: Batch | None = None  # the batch whose transaction it works inside
        self._saw: Batch | None = None  # a batch whose uncommitted rows it may have read

    async def enter(self) -> None:
        self._raw = await self._link.take_turn()
        self._entered = True

    async def exit(self, exc: BaseException | None) -> None:
        self._entered = False
        try:
            self._end(roll_back=True)
        except Unavailable:
            if exc is None:  # the first cause is the one to report
                raise
            return
        saw, self._saw = self._saw, None
        if saw is not None and exc is None:
            await saw.wait()  # it read rows of that batch: its answer waits for them to be durable

    async def commit(self) -> None:
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'async with'")
        raw = self._raw
        if raw is None or not self._begun:
            return  # nothing read or written since it began (or last committed)
        batch = self._link.commit(raw, self._joined)  # on failure, leaving the block rolls back
        self._begun, self._joined, self._saw = False, None, None
        self._end(roll_back=False)
        if batch.done:  # this unit filled the batch, which committed at once: the units that
            await asyncio.sleep(0)  # committed into it before wake a round later, and go on first
        await batch.wait()

    async def execute(self, statement: Executable, params: Params | None = None) -> Result:
        raw = self._raw
        if raw is None:
            if not self._entered:
                raise RuntimeError("use the unit of work inside 'async with'")
            raw = self._raw = await self._link.take_turn()  # again, after a commit
        if not self._begun:
            self._joined = self._link.begin(raw)
            self._saw = self._joined
            self._begun = True
        return self._link.execute(statement, params)

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
