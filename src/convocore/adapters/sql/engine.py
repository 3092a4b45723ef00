"""Engines: SQLAlchemy's, for the schema and migrations and for handing out the driver
connection the units of work run on; and what the URLs each backend takes look like.

SQLite runs on SQLAlchemy's sync engine over the standard library's ``sqlite3``: a SQLite
statement takes microseconds, and every hop to a worker thread and back would cost more than
that. (PostgreSQL's async engine and pool: ``postgres.py``, with the ``postgres`` extra.)
"""

import logging
import sqlite3
import threading
from collections.abc import Callable

from sqlalchemy import Connection, Engine, event, make_url
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

Observe = Callable[[float], None]  # hears how long each statement took, in seconds

# Accepted for each backend (the documented default is sqlite+aiosqlite://, from before SQLite
# ran on sqlite3 itself), and the driver each runs on.
_SQLITE_DRIVERS = frozenset({"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"})
_POSTGRES_DRIVERS = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})
# wal_autocheckpoint: the serving connection checkpoints by itself (on the loop, after a commit)
# only once the WAL reaches 4,000 pages; below that, ``WalCheckpointer`` does it from a thread.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "foreign_keys=ON", "wal_autocheckpoint=4000")
# FULL: a commit returns once the WAL is synced to disk, so what was acknowledged survives a power
# cut (group commit shares one sync among the units of a round). NORMAL: it survives the process
# being killed, not the machine losing power; faster.
SYNCHRONOUS = ("full", "normal")


def backend_of(url: str) -> str:
    """``sqlite`` or ``postgresql``, for the URL forms this adapter takes."""
    driver = make_url(url).drivername
    if driver in _SQLITE_DRIVERS:
        return "sqlite"
    if driver in _POSTGRES_DRIVERS:
        return "postgresql"
    raise ValueError(f"unsupported database URL {driver!r}: use sqlite:///FILE or postgresql://...")


def sqlite_engine(url: str, *, busy_timeout_ms: int, synchronous: str = "full") -> Engine:
    """A sync engine on ``sqlite3``. An in-memory database lives in one connection, which every
    user of the engine shares (``StaticPool``); a file's pool opens connections as asked."""
    parsed = make_url(url).set(drivername="sqlite+pysqlite")
    memory = in_memory(parsed)
    engine = sa_create_engine(
        parsed,
        poolclass=StaticPool if memory else None,
        connect_args={"check_same_thread": False},
    )
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"SQLite synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
    event.listen(engine, "connect", lambda connection, _: configure_sqlite(connection, busy_timeout_ms, synchronous))
    event.listen(engine, "begin", _begin_immediate)
    return engine


def configure_sqlite(connection: sqlite3.Connection, busy_timeout_ms: int, synchronous: str = "full") -> None:
    # No transactions begun by the sqlite3 module behind our back (it would skip BEGIN before a
    # SELECT, so a read would not share its unit's transaction): units of work begin their own.
    connection.isolation_level = None
    for pragma in (*_SQLITE_PRAGMAS, f"synchronous={synchronous.upper()}", f"busy_timeout={int(busy_timeout_ms)}"):
        connection.execute(f"PRAGMA {pragma}").close()


def _begin_immediate(connection: Connection) -> None:
    # The write lock up front: another process sharing the file waits (busy_timeout) rather
    # than failing half-way with a stale snapshot. SQLAlchemy's documented pysqlite recipe.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def sqlite_file(url: URL) -> tuple[str, bool] | None:
    """What ``sqlite3.connect`` takes for a file database: its name and whether it is a URI."""
    if in_memory(url):
        return None
    return url.database or "", str(url.query.get("uri", "")).lower() in ("true", "1")


class WalCheckpointer:
    """Copies committed pages from a SQLite file's WAL into the database, on a thread of its own.

    SQLite's automatic checkpoint runs in the connection that commits, the event loop's: a commit
    would also copy pages back and wait for fsync while every socket waited. This thread's own
    connection runs ``PRAGMA wal_checkpoint(PASSIVE)`` a few times a second instead (``sqlite3``
    lets go of the GIL while SQLite works). PASSIVE never waits for or blocks a writer, and a
    commit is durable in the WAL either way."""

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
