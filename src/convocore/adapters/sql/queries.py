"""The statements the repositories run, built once at import with named parameters (building a
statement costs more than SQLite takes to run it), and ``Saver``, which writes only what changed.

Where-clause parameters are named "k_<column>", so they never clash with the column names an
UPDATE takes its SET values from.
"""

from collections.abc import Awaitable, Callable, Mapping
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Executable,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects import postgresql, sqlite

from convocore.adapters.sql import tables
from convocore.adapters.sql.rows import PAGE_COLUMNS, Values
from convocore.adapters.sql.statements import Params, Result, prebuilt

Execute = Callable[[Executable, Params | None], Awaitable[Result]]

users, sessions, conversations = tables.users, tables.sessions, tables.conversations
members, messages = tables.members, tables.messages


def by(table: Table, *columns: str) -> ColumnElement[bool]:
    return and_(*(table.c[name] == bindparam(f"k_{name}") for name in columns))


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _after(first: ColumnElement[Any], second: ColumnElement[Any], a: str, b: str) -> ColumnElement[bool]:
    """(first, second) > (:a, :b), spelled out: row-value comparison is not portable."""
    return or_(first > bindparam(a), and_(first == bindparam(a), second > bindparam(b)))


def _before(first: ColumnElement[Any], second: ColumnElement[Any], a: str, b: str) -> ColumnElement[bool]:
    return or_(first < bindparam(a), and_(first == bindparam(a), second < bindparam(b)))


def _limited(statement: Select[Any]) -> Select[Any]:
    return statement.limit(bindparam("k_limit"))


# -- users ----------------------------------------------------------------------------------

USER_INSERT = prebuilt(sa_insert(users))
USER_BY_ID = prebuilt(users.select().where(by(users, "id")))
USER_BY_KEY = prebuilt(users.select().where(by(users, "username_key")))
_key = users.c.username_key
_USER_SEARCH = _limited(users.select().where(_key.like(bindparam("k_pattern"), escape="\\")).order_by(_key))
USER_SEARCH = {  # by whether there is an ``after`` cursor
    False: prebuilt(_USER_SEARCH),
    True: prebuilt(_USER_SEARCH.where(_key > bindparam("k_after"))),
}


def users_by_ids(user_ids: list[str]) -> Select[Any]:
    """One-off: compiled for the number of ids it has."""
    return users.select().where(users.c.id.in_(user_ids))


# -- sessions -------------------------------------------------------------------------------

SESSION_INSERT = prebuilt(sa_insert(sessions))
SESSION_BY = {
    name: prebuilt(sessions.select().where(by(sessions, name))) for name in ("id", "access_hash", "refresh_hash")
}
# PostgreSQL holds the row until commit (a second refresh with the same token then finds none).
SESSION_FOR_UPDATE_BY = {name: prebuilt(SESSION_BY[name].with_for_update()) for name in ("id", "refresh_hash")}
retired = tables.retired_refresh_tokens
RETIRED_INSERT = prebuilt(sa_insert(retired))
SESSION_BY_RETIRED = prebuilt(
    sessions.select()
    .select_from(sessions.join(retired, retired.c.session_id == sessions.c.id))
    .where(by(retired, "refresh_hash"))
)

# -- conversations --------------------------------------------------------------------------

CONVERSATION_INSERT = prebuilt(sa_insert(conversations))
CONVERSATION_BY_ID = prebuilt(conversations.select().where(by(conversations, "id")))
# PostgreSQL holds the row lock until commit. SQLite renders no FOR UPDATE: there every unit of
# work runs alone anyway.
CONVERSATION_FOR_UPDATE = prebuilt(CONVERSATION_BY_ID.with_for_update())
CONVERSATION_BY_DIRECT_KEY = prebuilt(conversations.select().where(by(conversations, "direct_key")))
MEMBERSHIPS = prebuilt(
    select(conversations.c.id, conversations.c.last_seq)
    .select_from(members.join(conversations, conversations.c.id == members.c.conversation_id))
    .where(by(members, "user_id"))
)
# The conversation and one member in one statement, both as of one snapshot.
_ONE_MEMBER = and_(members.c.conversation_id == conversations.c.id, members.c.user_id == bindparam("k_user_id"))
CONVERSATION_WITH_MEMBER = prebuilt(
    select(conversations, members)
    .select_from(conversations.outerjoin(members, _ONE_MEMBER))
    .where(by(conversations, "id"))
)
# PostgreSQL, to change things: both rows locked, the conversation's first (every unit that
# changes a member locks its conversation first, so no two wait on each other). Locked, each row
# is re-read as it is once the lock is granted: a member removed meanwhile makes the row vanish.
CONVERSATION_WITH_MEMBER_LOCKED = prebuilt(
    select(conversations, members)
    .select_from(conversations.join(members, _ONE_MEMBER))
    .where(by(conversations, "id"))
    .with_for_update(of=[conversations, members])
)
_c = conversations.c
_PUBLIC = _limited(
    conversations.select()
    .where(_c.public, func.lower(_c.title).like(func.lower(bindparam("k_pattern")), escape="\\"))
    .order_by(_c.title, _c.id)
)
PUBLIC = {False: prebuilt(_PUBLIC), True: prebuilt(_PUBLIC.where(_after(_c.title, _c.id, "k_title", "k_id")))}


def _inbox(*, before: bool) -> Select[Any]:
    m, msg = members.c, messages.c
    joined = members.join(conversations, _c.id == m.conversation_id).outerjoin(
        messages, and_(msg.conversation_id == _c.id, msg.seq == _c.last_seq)
    )
    statement = _limited(
        select(conversations, members, messages)
        .select_from(joined)
        .where(m.user_id == bindparam("k_user_id"))
        .order_by(_c.last_activity_at.desc(), _c.id.desc())
    )
    return statement.where(_before(_c.last_activity_at, _c.id, "k_at", "k_id")) if before else statement


INBOX = {False: prebuilt(_inbox(before=False)), True: prebuilt(_inbox(before=True))}

# -- members --------------------------------------------------------------------------------

MEMBER_INSERT = prebuilt(sa_insert(members))
MEMBER_BY_KEY = prebuilt(members.select().where(by(members, "conversation_id", "user_id")))
MEMBERS_OF = prebuilt(
    members.select().where(by(members, "conversation_id")).order_by(members.c.joined_at, members.c.user_id)
)
MEMBER_DELETE: Delete = prebuilt(members.delete().where(by(members, "conversation_id", "user_id")))

# -- messages -------------------------------------------------------------------------------

# A repeated client_id is answered by the INSERT itself (rowcount 0) through the unique index on
# (conversation, sender, client_id). SQLite and PostgreSQL spell ON CONFLICT alike, but
# SQLAlchemy builds it per dialect.
_CLIENT_ID_KEY = ("conversation_id", "sender_id", "client_id")
MESSAGE_INSERT: dict[str, Insert] = {
    "sqlite": prebuilt(sqlite.insert(messages).on_conflict_do_nothing(index_elements=_CLIENT_ID_KEY)),
    "postgresql": prebuilt(postgresql.insert(messages).on_conflict_do_nothing(index_elements=_CLIENT_ID_KEY)),
}
MESSAGE_BY_KEY = prebuilt(messages.select().where(by(messages, "conversation_id", "seq")))
MESSAGE_BY_CLIENT_ID = prebuilt(messages.select().where(by(messages, "conversation_id", "sender_id", "client_id")))


def _page(*, before: bool, after: bool) -> Select[Any]:
    m = messages.c
    statement = _limited(select(*PAGE_COLUMNS).where(m.conversation_id == bindparam("k_conversation_id")))
    if before:
        statement = statement.where(m.seq < bindparam("k_before"))
    if after:  # the oldest end of the range: an ascending range scan on the primary key
        return statement.where(m.seq > bindparam("k_after")).order_by(m.seq)
    return statement.order_by(m.seq.desc())  # the newest end: the key walked backwards


PAGES = {(b, a): prebuilt(_page(before=b, after=a)) for b in (False, True) for a in (False, True)}


# -- saving ---------------------------------------------------------------------------------

_MISSING = object()
# A repository's rows by key, as its unit of work last read or wrote them: what a save compares
# with. Rows are never changed in place, so keeping them costs nothing.
Seen = dict[tuple[Any, ...], Mapping[Any, Any]]


class Saver:
    """Update the row, or insert it when missing (``insert_missing``).

    Only the columns that differ from what this unit of work last read or wrote of the row go
    into the UPDATE (all of them for a row it has not seen), never the key: with foreign keys on,
    SQLite treats ``SET id = id`` on a conversation as a parent-key change and visits every
    message pointing at it. A row found as it is writes nothing."""

    def __init__(self, table: Table, *key: str, insert_missing: bool = True) -> None:
        self._update: Update = prebuilt(update(table).where(by(table, *key)))
        self._insert: Insert | None = prebuilt(sa_insert(table)) if insert_missing else None
        self._key = key
        self._key_params = tuple(f"k_{name}" for name in key)
        self._row_key: Callable[[Values], tuple[Any, ...]] = (
            itemgetter(*key) if len(key) > 1 else (lambda values: (values[key[0]],))
        )

    async def __call__(self, execute: Execute, values: Values, seen: Seen) -> None:
        row_key = self._row_key(values)
        known = seen.get(row_key)
        if known is None:
            params = {name: value for name, value in values.items() if name not in self._key}
        elif known == values:
            return
        else:
            params = {name: value for name, value in values.items() if known.get(name, _MISSING) != value}
        if params:
            params.update(zip(self._key_params, row_key, strict=True))
            result = await execute(self._update, params)
            if result.rowcount == 0 and self._insert is not None:
                await execute(self._insert, values)
        seen[row_key] = values


save_session = Saver(sessions, "id")
save_conversation = Saver(conversations, "id")
save_member = Saver(members, "conversation_id", "user_id")
save_message = Saver(messages, "conversation_id", "seq", insert_missing=False)
