"""Opening a SQL database as the application's storage, by its URL."""

from typing import TYPE_CHECKING, TypeAlias

from convocore.adapters.sql.engine import backend_of
from convocore.adapters.sql.sqlite import SqliteStorage

if TYPE_CHECKING:  # PostgreSQL needs the postgres extra: imported only when asked for
    from convocore.adapters.sql.postgres import PostgresStorage

SqlStorage: TypeAlias = "SqliteStorage | PostgresStorage"


def open_storage(
    url: str, *, migrate: bool = False, sqlite_busy_timeout_ms: int = 5000, sqlite_synchronous: str = "full"
) -> SqlStorage:
    """``sqlite:///FILE`` (also ``sqlite+aiosqlite://``, ``sqlite://`` for memory) or
    ``postgresql://...`` (also ``postgresql+asyncpg://``). Nothing is connected until used.

    ``migrate``: a PostgreSQL database is upgraded as the storage starts, else only checked; a
    SQLite one is upgraded on every start."""
    if backend_of(url) == "sqlite":
        return SqliteStorage(url, busy_timeout_ms=sqlite_busy_timeout_ms, synchronous=sqlite_synchronous)
    try:
        from convocore.adapters.sql.postgres import PostgresStorage
    except ImportError as error:
        raise ImportError(
            f"PostgreSQL needs the postgres extra: pip install 'convocore[postgres]' ({error})"
        ) from error
    return PostgresStorage(url, migrate=migrate)
