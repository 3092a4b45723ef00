"""The schema as SQLAlchemy Core tables, portable between SQLite and PostgreSQL."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine.processors import str_to_datetime
from sqlalchemy.types import TypeEngine

from convocore.domain.conversations import TITLE_MAX
from convocore.domain.messages import CLIENT_ID_MAX
from convocore.domain.users import DISPLAY_NAME_MAX

ID = 36  # a uuid4 in its canonical text form
USERNAME = 64  # the domain allows 32; room for a casefold that grows a name
HASH = 255  # argon2 encodings and hex digests both fit

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def seq() -> TypeEngine[int]:
    """A seq: 64-bit (BIGINT) on PostgreSQL; SQLite's INTEGER is 64-bit already."""
    return BigInteger().with_variant(Integer(), "sqlite")


def bytewise(length: int) -> TypeEngine[str]:
    """A string compared bytewise on every backend, as Python compares ``str``.

    SQLite's default collation is already bytewise; PostgreSQL's depends on the database's locale,
    and keyset paging only works when the database orders rows exactly as the cursor does.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no zone-aware type, so values are stored as naive UTC text (fixed width, so it
    sorts chronologically) and the zone is put back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite a value went through this type's method and then the dialect's DATETIME text
    # conversion, several Python calls each; a post binds and reads six. These do both steps at
    # once, to the same text and back (tests/unit/test_utc_datetime.py holds them to SQLAlchemy's).

    def bind_processor(self, dialect: Dialect) -> "_Processor | None":
        return _sqlite_bind if dialect.name == "sqlite" else super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> "_Processor | None":
        return _sqlite_result if dialect.name == "sqlite" else super().result_processor(dialect, coltype)


_Processor = Callable[[Any], Any]


_bound: tuple[datetime | None, str | None] = (None, None)  # the last value bound, and its text
_STORED_LENGTH = len("2026-01-01 00:00:00.000000")
_encode = msgspec.json.encode
_ENCODED_LENGTH = len(b'"2026-01-01T00:00:00.000001Z"')


def _sqlite_bind(value: datetime | None) -> str | None:
    """``process_bind_param`` then SQLite's DATETIME storage format, ``YYYY-MM-DD HH:MM:SS.ffffff``.

    A post binds the one clock reading it was given several times (the message, the
    conversation, the sender's membership), so the last value's text is kept: a datetime is
    immutable and the kept one is alive, so the same object means the same text."""
    global _bound
    if value is None:
        return None
    last = _bound
    if value is last[0]:
        return last[1]
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware one")
    if value.tzinfo is UTC:
        # msgspec writes "YYYY-MM-DDTHH:MM:SS.ffffffZ" (quoted) in C, far cheaper than
        # isoformat; it leaves the fraction out when it is zero.
        encoded = _encode(value)
        if len(encoded) == _ENCODED_LENGTH:
            text = encoded[1:27].decode().replace("T", " ")
        else:  # its isoformat ends in "+00:00"; replace(tzinfo=None) costs more than slicing it off
            text = value.isoformat(" ", "microseconds")[:-6]
    else:
        text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    _bound = (value, text)
    return text


def _sqlite_result(value: str | None) -> datetime | None:
    """SQLite's DATETIME text (as SQLAlchemy parses it) as an aware UTC datetime. The stored
    form (``YYYY-MM-DD HH:MM:SS.ffffff``, 26 characters) is parsed with its zone in one step:
    ``replace(tzinfo=)`` alone cost several times the parse. Any other form goes the way
    SQLAlchemy reads it (``fromisoformat`` would read a bare date with an offset as naive)."""
    if value is None:
        return None
    if len(value) == _STORED_LENGTH:
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass
    parsed: datetime = str_to_datetime(value)
    return parsed.replace(tzinfo=UTC)


users = Table(
    "users",
    metadata,
    Column("id", bytewise(ID), primary_key=True),
    Column("username", bytewise(USERNAME), nullable=False),
    Column("username_key", bytewise(USERNAME), nullable=False, unique=True),
    Column("display_name", bytewise(DISPLAY_NAME_MAX), nullable=False),
    Column("password_hash", bytewise(HASH), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", bytewise(ID), primary_key=True),
    Column("user_id", bytewise(ID), ForeignKey(users.c.id), nullable=False, index=True),
    Column("access_hash", bytewise(HASH), nullable=False, unique=True),
    Column("access_expires_at", UtcDateTime(), nullable=False),
    Column("refresh_hash", bytewise(HASH), nullable=False, unique=True),
    Column("refresh_expires_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

# Refresh tokens rotated away, by hash: one presented again means it leaked.
retired_refresh_tokens = Table(
    "retired_refresh_tokens",
    metadata,
    Column("refresh_hash", bytewise(HASH), primary_key=True),
    Column("session_id", bytewise(ID), ForeignKey(sessions.c.id), nullable=False, index=True),
    Column("retired_at", UtcDateTime(), nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", bytewise(ID), primary_key=True),
    Column("kind", bytewise(16), nullable=False),
    Column("title", bytewise(TITLE_MAX), nullable=True),
    Column("public", Boolean(), nullable=False),
    Column("created_by", bytewise(ID), ForeignKey(users.c.id), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_activity_at", UtcDateTime(), nullable=False),
    Column("last_seq", seq(), nullable=False),
    Column("member_count", Integer(), nullable=False),
    # NULL for groups; NULLs never clash in a unique index, on either backend.
    Column("direct_key", bytewise(2 * ID + 1), nullable=True, unique=True),
    Index(None, "last_activity_at", "id"),
    Index(None, "public", "title", "id"),
)

members = Table(
    "members",
    metadata,
    Column("conversation_id", bytewise(ID), ForeignKey(conversations.c.id), nullable=False),
    Column("user_id", bytewise(ID), ForeignKey(users.c.id), nullable=False, index=True),
    Column("role", bytewise(16), nullable=False),
    Column("joined_at", UtcDateTime(), nullable=False),
    Column("last_read_seq", seq(), nullable=False),
    PrimaryKeyConstraint("conversation_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("conversation_id", bytewise(ID), ForeignKey(conversations.c.id), nullable=False),
    Column("seq", seq(), nullable=False),
    Column("id", bytewise(ID), nullable=False),
    Column("sender_id", bytewise(ID), ForeignKey(users.c.id), nullable=False),
    Column("body", Text(), nullable=False),
    Column("client_id", bytewise(CLIENT_ID_MAX), nullable=True),
    Column("reply_to", seq(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("edited_at", UtcDateTime(), nullable=True),
    Column("deleted", Boolean(), nullable=False),
    # History is read as ranges of seq within one conversation: the key is that range's index.
    PrimaryKeyConstraint("conversation_id", "seq"),
    UniqueConstraint("conversation_id", "sender_id", "client_id"),
)

# A post's bookkeeping: storing a message newer than its conversation's last makes it the last
# (seq and activity time) and sets its sender's read marker to it, as messages.post does in
# memory, inside the INSERT (the SQL repositories run no UPDATE for it). Only forward: a message
# older than the conversation's last (an import) changes neither row. The same rule in each
# dialect's spelling; migration 0002 adds it to an existing database.
POSTED_TRIGGER = "messages_posted"
POSTED_TRIGGER_SQLITE = f"""CREATE TRIGGER IF NOT EXISTS {POSTED_TRIGGER} AFTER INSERT ON messages
WHEN NEW.seq > (SELECT last_seq FROM conversations WHERE id = NEW.conversation_id)
BEGIN
    UPDATE conversations SET last_seq = NEW.seq, last_activity_at = NEW.created_at WHERE id = NEW.conversation_id;
    UPDATE members SET last_read_seq = NEW.seq WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id;
END"""
POSTED_TRIGGER_POSTGRESQL = (
    f"""CREATE OR REPLACE FUNCTION {POSTED_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET last_seq = NEW.seq, last_activity_at = NEW.created_at
        WHERE id = NEW.conversation_id AND last_seq < NEW.seq;
    IF FOUND THEN
        UPDATE members SET last_read_seq = NEW.seq
            WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id;
    END IF;
    RETURN NULL;
END $$""",
    f"DROP TRIGGER IF EXISTS {POSTED_TRIGGER} ON messages",
    f"CREATE TRIGGER {POSTED_TRIGGER} AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION {POSTED_TRIGGER}()",
)  # one statement each: asyncpg prepares what it runs
for _dialect, _statements in (("sqlite", (POSTED_TRIGGER_SQLITE,)), ("postgresql", POSTED_TRIGGER_POSTGRESQL)):
    for _statement in _statements:
        event.listen(messages, "after_create", DDL(_statement).execute_if(dialect=_dialect))  # type: ignore[no-untyped-call]
