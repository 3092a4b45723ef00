"""The one place the drivers' and SQLAlchemy's exceptions become domain errors.

A broken constraint is a ``Conflict`` named after what clashed; a busy, locked or unreachable
database is ``Unavailable`` (the caller may retry). Anything else is a bug and propagates as is.
"""

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint, exc

from convocore.adapters.sql.tables import metadata
from convocore.domain.errors import Conflict, Unavailable

# Constraint name (from the naming convention) -> (detail, field), as the memory adapter words them.
_CONFLICTS: dict[str, tuple[str, str]] = {
    "uq_users_username_key": ("that username is taken", "username"),
    "uq_conversations_direct_key": ("a direct conversation for this pair exists", "members"),
    "pk_members": ("already a member", "user_id"),
    "pk_messages": ("seq must follow the last one", "seq"),
    "uq_messages_conversation_id_sender_id_client_id": ("that client_id was already used", "client_id"),
}
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")  # as postgres.py: worth a retry
_PG_CONSTRAINT = re.compile(r'constraint "([^"]+)"')
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$", re.MULTILINE)


def busy() -> Unavailable:
    return Unavailable("the database is busy or unreachable; try again", retry_after=1)


def raise_for_sqlite(error: sqlite3.Error) -> NoReturn:
    """Raise what a ``sqlite3`` error means: a clash, a busy or broken database (from it), or a
    bug (the error itself)."""
    if isinstance(error, sqlite3.IntegrityError):
        raise conflict(None, str(error)) from error
    if isinstance(error, sqlite3.OperationalError):  # locked, busy, I/O, full disk, unreadable file
        raise busy() from error
    raise error


@contextmanager
def translate_errors(*, connecting: bool = False) -> Iterator[None]:
    """For work done through SQLAlchemy (connecting, the schema, migrations). ``connecting``:
    any database error while getting a connection means the database cannot serve us now
    (refusing connections, starting up, out of slots), whatever its SQLSTATE."""
    try:
        yield
    except Exception as error:
        domain = _from_sqlalchemy(error, connecting=connecting)
        if domain is error:
            raise
        raise domain from error


def _from_sqlalchemy(error: Exception, *, connecting: bool) -> Exception:
    if isinstance(error, exc.IntegrityError):
        return conflict(None, str(error.orig))
    if connecting and isinstance(error, exc.DBAPIError | OSError):
        return busy()
    if isinstance(error, exc.OperationalError | exc.TimeoutError | exc.DisconnectionError | OSError):
        return busy()
    if isinstance(error, exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        if error.connection_invalidated or (isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES)):
            return busy()
    return error


def conflict(constraint: str | None, message: str) -> Conflict:
    """The clash a broken constraint stands for, by its name (or as the driver's message names it)."""
    name = constraint or _constraint_name(message)
    detail, field = _CONFLICTS.get(name or "", ("that clashes with stored data", None))
    return Conflict(detail, field=field)


def _constraint_name(message: str) -> str | None:
    """PostgreSQL names the constraint; SQLite names its columns, so look those up."""
    if found := _PG_CONSTRAINT.search(message):
        return found[1]
    if found := _SQLITE_UNIQUE.search(message):
        qualified = [column.strip().split(".", 1) for column in found[1].split(",")]
        table = metadata.tables.get(qualified[0][0])
        columns = [name for _, name in qualified]
        for constraint in table.constraints if table is not None else ():
            if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint) and constraint.columns.keys() == columns:
                return str(constraint.name)
    return None
