"""The one place SQLAlchemy's exceptions become domain errors.

A broken constraint is a ``Conflict`` named after what clashed; a busy, locked or unreachable
database is ``Unavailable`` (the caller may retry). Anything else is a bug and propagates as is.
"""

import re
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
# SQLSTATE classes worth a retry: connection exception, transaction rollback (deadlock,
# serialization failure), insufficient resources, operator intervention (shutdown).
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")
_PG_CONSTRAINT = re.compile(r'constraint "([^"]+)"')
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$", re.MULTILINE)


@contextmanager
def translate_errors(*, connecting: bool = False) -> Iterator[None]:
    """``connecting``: any database error while getting a connection means the database cannot
    serve us now (refusing connections, starting up, out of slots), whatever its SQLSTATE."""
    try:
        yield
    except Exception as error:
        raise_translated(error, connecting=connecting)


def raise_translated(error: Exception, *, connecting: bool = False) -> NoReturn:
    """Raise the domain error ``error`` stands for (from it), or ``error`` itself. For code that
    cannot afford a ``with translate_errors()`` block per statement (the SQLite unit of work runs
    several per message): ``except Exception as e: raise_translated(e)``."""
    domain = translated(error, connecting=connecting)
    if domain is error:
        raise error
    raise domain from error


def translated(error: Exception, *, connecting: bool = False) -> Exception:
    """The domain error ``error`` stands for, or ``error`` itself (a bug: let it propagate)."""
    if isinstance(error, exc.IntegrityError):
        return _conflict(error)
    if _transient(error) or (connecting and isinstance(error, exc.DBAPIError)):
        return Unavailable("the database is busy or unreachable; try again", retry_after=1)
    return error


def _conflict(error: exc.IntegrityError) -> Conflict:
    detail, field = _CONFLICTS.get(_constraint_name(str(error.orig)) or "", ("that clashes with stored data", None))
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


def _transient(error: Exception) -> bool:
    # OSError covers refused connections and connect timeouts, which drivers raise unwrapped.
    if isinstance(error, exc.OperationalError | exc.TimeoutError | exc.DisconnectionError | OSError):
        return True
    if isinstance(error, exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        return error.connection_invalidated or (isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES))
    return False
