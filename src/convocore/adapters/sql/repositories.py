"""SQL repositories. Each runs its statements through the unit of work's ``execute``, which
holds the transaction and turns the driver's errors into domain errors."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Executable,
    Insert,
    RowMapping,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from convocore.adapters.sql import sqlite_fast, tables
from convocore.adapters.sql.rows import (
    CONVERSATION_RECORD,
    MEMBER_RECORD,
    PAGE_COLUMNS,
    Values,
    conversation_from_record,
    conversation_from_row,
    conversation_values,
    member_from_record,
    member_from_row,
    member_values,
    message_from_record,
    message_from_row,
    message_values,
    session_from_row,
    session_values,
    user_from_row,
    user_values,
)
from convocore.application.ports import InboxCursor, InboxEntry, TitleCursor
from convocore.domain.conversations import Conversation, Member
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User, normalize_username

Params = Mapping[str, Any]
# A CursorResult, or for SQLite's prebuilt statements its stand-in (sqlite_fast.Result).
Execute = Callable[[Executable, Params | None], Awaitable[Any]]

_users, _sessions, _conversations = tables.users, tables.sessions, tables.conversations
_members, _messages = tables.members, tables.messages

# The statements every request runs are built once, here, with named parameters: building a
# statement and computing its cache key cost more than SQLite takes to run it, and a statement
# object built once keeps its cache key. (Where-clause parameters are prefixed "k_" so they never
# clash with the column names an UPDATE takes its SET values from.)


_built = sqlite_fast.prebuilt  # SQLite runs these on sqlite3 directly (sqlite_fast.py)


def _by(table: Table, *columns: str) -> ColumnElement[bool]:
    return and_(*(table.c[name] == bindparam(f"k_{name}") for name in columns))


class _Saver:
    """Update the row, or insert it when missing (``insert_missing``): ``save`` stores whatever
    it is given.

    Only the columns that differ from what this unit of work last read or wrote of the row go
    into the UPDATE (all of them for a row it has not seen), and the key never does. A post
    changes two of a conversation's ten columns and one of a member's five; each column bound
    costs its type's processing, and SQLite rewrites an index entry for each indexed column set.
    Setting a key column to its own value is not free either: with foreign keys on, SQLite treats
    ``SET id = id`` on a conversation as a parent-key change and visits every message pointing at
    it, so a post cost time in proportion to the conversation's history (that UPDATE alone: 6 us
    at 0 messages, 5 ms at 100,000; docs/performance.md, lever 15).
    """

    def __init__(self, table: Table, *key: str, insert_missing: bool = True) -> None:
        self._update: Update = _built(update(table).where(_by(table, *key)))
        self._insert: Insert | None = _built(insert(table)) if insert_missing else None
        self._key = key
        self._key_params = tuple(f"k_{name}" for name in key)  # the WHERE's parameters, named once
        # The row's key from its values, in C: itemgetter gives a tuple for two names or more.
        self._row_key: Callable[[Values], tuple[Any, ...]] = itemgetter(*key) if len(key) > 1 else _one(key[0])

    async def __call__(self, execute: Execute, values: Values, seen: "_Seen") -> None:
        row_key = self._row_key(values)
        known = seen.get(row_key)
        if known is None:
            params = {name: value for name, value in values.items() if name not in self._key}
        elif known == values:  # the same columns, all as known (a post's saves, lever 51): in C
            return
        else:
            params = {name: value for name, value in values.items() if known.get(name, _MISSING) != value}
        if params:  # else what this transaction read or wrote of the row is what it would write
            params.update(zip(self._key_params, row_key, strict=True))
            result = await execute(self._update, params)
            if result.rowcount == 0 and self._insert is not None:
                await execute(self._insert, values)
        seen[row_key] = values  # once written


def _one(name: str) -> Callable[[Values], tuple[Any, ...]]:
    return lambda values: (values[name],)


_MISSING = object()
# A repository's rows by key, as its unit of work last read or wrote them (a row as read, or the
# values written): what a save compares with. Rows are never changed in place, so keeping them
# costs nothing.
_Seen = dict[tuple[Any, ...], Mapping[Any, Any]]


async def _first(execute: Execute, statement: Executable, params: Params | None = None) -> RowMapping | None:
    row: RowMapping | None = (await execute(statement, params)).mappings().first()
    return row


async def _all(execute: Execute, statement: Executable, params: Params | None = None) -> Sequence[RowMapping]:
    rows: Sequence[RowMapping] = (await execute(statement, params)).mappings().all()
    return rows


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _keyset_after(first: ColumnElement[Any], second: ColumnElement[Any], a: object, b: object) -> ColumnElement[bool]:
    """(first, second) > (a, b), spelled out: row-value comparison is not portable."""
    return or_(first > a, and_(first == a, second > b))


def _keyset_before(first: ColumnElement[Any], second: ColumnElement[Any], a: object, b: object) -> ColumnElement[bool]:
    return or_(first < a, and_(first == a, second < b))


_USER_INSERT = _built(insert(_users))
_USER_BY_ID = _built(_users.select().where(_by(_users, "id")))
_USER_BY_KEY = _built(_users.select().where(_by(_users, "username_key")))
_USERS_BY_IDS = _users.select().where(_users.c.id.in_(bindparam("k_ids", expanding=True)))


class SqlAlchemyUserRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, user: User) -> None:
        await self._execute(_USER_INSERT, user_values(user))

    async def get(self, user_id: str) -> User | None:
        row = await _first(self._execute, _USER_BY_ID, {"k_id": user_id})
        return user_from_row(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        row = await _first(self._execute, _USER_BY_KEY, {"k_username_key": normalize_username(username)})
        return user_from_row(row) if row else None

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        rows = await _all(self._execute, _USERS_BY_IDS, {"k_ids": list(user_ids)})
        found = {user.id: user for user in map(user_from_row, rows)}
        return {uid: found[uid] for uid in user_ids if uid in found}

    async def search(self, *, prefix: str, after: str | None, limit: int) -> list[User]:
        key = _users.c.username_key
        statement = (
            _users.select()
            .where(key.like(_like_escape(normalize_username(prefix)) + "%", escape="\\"))
            .order_by(key)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(key > after)
        return [user_from_row(row) for row in await _all(self._execute, statement)]


_SESSION_INSERT = _built(insert(_sessions))
_SESSION_BY = {
    name: _built(_sessions.select().where(_by(_sessions, name))) for name in ("id", "access_hash", "refresh_hash")
}
_save_session = _Saver(_sessions, "id")


class SqlAlchemySessionRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._seen: _Seen = {}

    async def add(self, session: AuthSession) -> None:
        values = session_values(session)
        await self._execute(_SESSION_INSERT, values)
        self._seen[(session.id,)] = values

    async def get(self, session_id: str) -> AuthSession | None:
        return await self._find("id", session_id)

    async def get_by_access_hash(self, access_hash: str) -> AuthSession | None:
        return await self._find("access_hash", access_hash)

    async def get_by_refresh_hash(self, refresh_hash: str) -> AuthSession | None:
        return await self._find("refresh_hash", refresh_hash)

    async def save(self, session: AuthSession) -> None:
        await _save_session(self._execute, session_values(session), self._seen)

    async def _find(self, column: str, value: str) -> AuthSession | None:
        row = await _first(self._execute, _SESSION_BY[column], {f"k_{column}": value})
        if row is None:
            return None
        self._seen[(row["id"],)] = row
        return session_from_row(row)


_CONVERSATION_INSERT = _built(insert(_conversations))
_CONVERSATION_BY_ID = _built(_conversations.select().where(_by(_conversations, "id")))
# PostgreSQL holds the row lock until commit. SQLite renders no FOR UPDATE: there every unit of
# work already runs alone (see unit_of_work.create_engine).
_CONVERSATION_FOR_UPDATE = _built(_CONVERSATION_BY_ID.with_for_update())
_CONVERSATION_BY_DIRECT_KEY = _built(_conversations.select().where(_by(_conversations, "direct_key")))
_MEMBERSHIPS = _built(
    select(_conversations.c.id, _conversations.c.last_seq)
    .select_from(_members.join(_conversations, _conversations.c.id == _members.c.conversation_id))
    .where(_by(_members, "user_id"))
)
_save_conversation = _Saver(_conversations, "id")
# The conversation and one member in one statement, both as of one snapshot (on SQLite every
# unit of work runs alone anyway).
_ONE_MEMBER = and_(_members.c.conversation_id == _conversations.c.id, _members.c.user_id == bindparam("k_user_id"))
_CONVERSATION_WITH_MEMBER = _built(
    select(_conversations, _members)
    .select_from(_conversations.outerjoin(_members, _ONE_MEMBER))
    .where(_by(_conversations, "id"))
)
# PostgreSQL, to change things: both rows locked, the conversation's first (the order of OF;
# every unit that changes a member locks its conversation first, so no two wait on each other).
# Locked, each is re-read as it is once the lock is granted, where a join's other rows would be
# as of the statement's start: a member removed while this waited makes the row vanish. No row
# (no such member when the statement began, or not any more) is then settled by reading the two
# one after the other, the conversation locked first.
_CONVERSATION_WITH_MEMBER_LOCKED = _built(
    select(_conversations, _members)
    .select_from(_conversations.join(_members, _ONE_MEMBER))
    .where(_by(_conversations, "id"))
    .with_for_update(of=[_conversations, _members])
)
_SPLIT = len(CONVERSATION_RECORD)


class SqlAlchemyConversationRepository:
    def __init__(self, execute: Execute, dialect: str, members: "SqlAlchemyMemberRepository") -> None:
        self._execute = execute
        self._sqlite = dialect == "sqlite"
        self._members = members
        self._seen: _Seen = {}

    async def add(self, conversation: Conversation) -> None:
        values = conversation_values(conversation)
        await self._execute(_CONVERSATION_INSERT, values)
        self._seen[(conversation.id,)] = values

    async def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        statement = _CONVERSATION_FOR_UPDATE if for_update else _CONVERSATION_BY_ID
        return self._seen_row(await _first(self._execute, statement, {"k_id": conversation_id}))

    async def get_with_member(
        self, conversation_id: str, user_id: str, *, for_update: bool = False
    ) -> tuple[Conversation | None, Member | None]:
        params = {"k_id": conversation_id, "k_user_id": user_id}
        # By position: rows by name cost more than the entities made from them (as for pages).
        if for_update and not self._sqlite:
            records = (await self._execute(_CONVERSATION_WITH_MEMBER_LOCKED, params)).all()
            if not records:  # not a member, or no such conversation: which, as of now
                conversation = await self.get(conversation_id, for_update=True)
                if conversation is None:
                    return None, None
                return conversation, await self._members.get(conversation_id, user_id)
        else:
            records = (await self._execute(_CONVERSATION_WITH_MEMBER, params)).all()
            if not records:
                return None, None
        record = tuple(records[0])
        conversation_part, member_part = record[:_SPLIT], record[_SPLIT:]
        self._seen[(conversation_id,)] = dict(zip(CONVERSATION_RECORD, conversation_part, strict=True))
        if member_part[0] is None:  # the outer join found no member
            return conversation_from_record(conversation_part), None
        self._members.remember(dict(zip(MEMBER_RECORD, member_part, strict=True)))
        return conversation_from_record(conversation_part), member_from_record(member_part)

    async def get_direct(self, key: str) -> Conversation | None:
        return self._seen_row(await _first(self._execute, _CONVERSATION_BY_DIRECT_KEY, {"k_direct_key": key}))

    def _seen_row(self, row: RowMapping | None) -> Conversation | None:
        if row is None:
            return None
        self._seen[(row["id"],)] = row
        return conversation_from_row(row)

    async def save(self, conversation: Conversation) -> None:
        await _save_conversation(self._execute, conversation_values(conversation), self._seen)

    def posted(self, message: Message) -> bool:
        """Note what ``tables.POSTED_TRIGGER`` wrote when ``message`` was stored, as a save would
        have (so saving the conversation as posting left it writes nothing more). False when
        this unit has not read the row, or the trigger did not run (an older message)."""
        key = (message.conversation_id,)
        known = self._seen.get(key)
        if known is None or known["last_seq"] >= message.seq:  # the trigger's own condition
            return False
        self._seen[key] = {**known, "last_seq": message.seq, "last_activity_at": message.created_at}
        return True

    async def inbox(self, *, user_id: str, before: InboxCursor | None, limit: int) -> list[InboxEntry]:
        rows = await _all(self._execute, _inbox_query(user_id=user_id, before=before, limit=limit))
        return [
            InboxEntry(
                conversation=conversation_from_row(row),
                member=member_from_row(row),
                last_message=message_from_row(row) if row[_messages.c.seq] is not None else None,
            )
            for row in rows
        ]

    async def memberships(self, user_id: str) -> list[tuple[str, int]]:
        return [(row.id, row.last_seq) for row in await self._execute(_MEMBERSHIPS, {"k_user_id": user_id})]

    async def public(self, *, query: str, after: TitleCursor | None, limit: int) -> list[Conversation]:
        c = _conversations.c
        # lower() on both sides, in SQL, so the needle and the titles fold the same way.
        pattern = func.lower("%" + _like_escape(query) + "%")
        statement = (
            _conversations.select()
            .where(c.public, func.lower(c.title).like(pattern, escape="\\"))
            .order_by(c.title, c.id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(_keyset_after(c.title, c.id, after.title, after.conversation_id))
        return [conversation_from_row(row) for row in await _all(self._execute, statement)]


def _inbox_query(*, user_id: str, before: InboxCursor | None, limit: int) -> Select[Any]:
    c, m, msg = _conversations.c, _members.c, _messages.c
    joined = _members.join(_conversations, c.id == m.conversation_id).outerjoin(
        _messages, and_(msg.conversation_id == c.id, msg.seq == c.last_seq)
    )
    statement = (
        select(_conversations, _members, _messages)
        .select_from(joined)
        .where(m.user_id == user_id)
        .order_by(c.last_activity_at.desc(), c.id.desc())
        .limit(limit)
    )
    if before is not None:
        statement = statement.where(
            _keyset_before(c.last_activity_at, c.id, before.last_activity_at, before.conversation_id)
        )
    return statement


_MEMBER_INSERT = _built(insert(_members))
_MEMBER_BY_KEY = _built(_members.select().where(_by(_members, "conversation_id", "user_id")))
_MEMBERS_OF = _built(
    _members.select().where(_by(_members, "conversation_id")).order_by(_members.c.joined_at, _members.c.user_id)
)
_MEMBER_DELETE: Delete = _built(_members.delete().where(_by(_members, "conversation_id", "user_id")))
_save_member = _Saver(_members, "conversation_id", "user_id")


class SqlAlchemyMemberRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._seen: _Seen = {}

    async def add(self, member: Member) -> None:
        values = member_values(member)
        await self._execute(_MEMBER_INSERT, values)
        self._seen[(member.conversation_id, member.user_id)] = values

    async def get(self, conversation_id: str, user_id: str) -> Member | None:
        row = await _first(self._execute, _MEMBER_BY_KEY, {"k_conversation_id": conversation_id, "k_user_id": user_id})
        if row is None:
            return None
        self._seen[(conversation_id, user_id)] = row
        return member_from_row(row)

    def remember(self, row: Mapping[str, Any]) -> None:
        """A member row read along with another table's (what a save compares with)."""
        self._seen[(row["conversation_id"], row["user_id"])] = row

    async def list(self, conversation_id: str) -> list[Member]:
        return [
            member_from_row(row)
            for row in await _all(self._execute, _MEMBERS_OF, {"k_conversation_id": conversation_id})
        ]

    async def save(self, member: Member) -> None:
        await _save_member(self._execute, member_values(member), self._seen)

    def posted(self, message: Message) -> None:
        """Note what ``tables.POSTED_TRIGGER`` wrote of the sender's row when it ran for ``message``."""
        key = (message.conversation_id, message.sender_id)
        known = self._seen.get(key)
        if known is not None:
            self._seen[key] = {**known, "last_read_seq": message.seq}

    async def remove(self, conversation_id: str, user_id: str) -> None:
        await self._execute(_MEMBER_DELETE, {"k_conversation_id": conversation_id, "k_user_id": user_id})
        self._seen.pop((conversation_id, user_id), None)


# A post stores its message in one statement whether or not its client_id was used before: the
# unique index on (conversation, sender, client_id) answers that in the INSERT (rowcount 0 when
# it was), where a SELECT ahead of every INSERT asked the same index a second time. SQLite and
# PostgreSQL spell ON CONFLICT alike but SQLAlchemy builds it per dialect.
_CLIENT_ID_KEY = ("conversation_id", "sender_id", "client_id")
_MESSAGE_INSERT = {
    "sqlite": _built(sqlite.insert(_messages).on_conflict_do_nothing(index_elements=_CLIENT_ID_KEY)),
    "postgresql": _built(postgresql.insert(_messages).on_conflict_do_nothing(index_elements=_CLIENT_ID_KEY)),
}  # by dialect name
_MESSAGE_BY_KEY = _built(_messages.select().where(_by(_messages, "conversation_id", "seq")))
_MESSAGE_BY_CLIENT_ID = _built(_messages.select().where(_by(_messages, "conversation_id", "sender_id", "client_id")))
_save_message = _Saver(_messages, "conversation_id", "seq", insert_missing=False)


def _page_statement(*, before: bool, after: bool) -> Select[Any]:
    m = _messages.c
    statement = (
        select(*PAGE_COLUMNS).where(m.conversation_id == bindparam("k_conversation_id")).limit(bindparam("k_limit"))
    )
    if before:
        statement = statement.where(m.seq < bindparam("k_before"))
    if after:
        # Oldest end of the range: an ascending range scan on the primary key.
        return statement.where(m.seq > bindparam("k_after")).order_by(m.seq)
    # Newest end: walk the key backwards (the caller puts the page in reading order).
    return statement.order_by(m.seq.desc())


_PAGES = {
    (before, after): _built(_page_statement(before=before, after=after))
    for before in (False, True)
    for after in (False, True)
}


class SqlAlchemyMessageRepository:
    """``trigger``: the unit's conversation and member repositories, when the database runs
    ``tables.POSTED_TRIGGER`` on every message stored; they are told what it wrote."""

    def __init__(
        self,
        execute: Execute,
        dialect: str,
        trigger: tuple[SqlAlchemyConversationRepository, SqlAlchemyMemberRepository] | None = None,
    ) -> None:
        self._execute = execute
        self._insert = _MESSAGE_INSERT[dialect]
        self._trigger = trigger
        self._seen: _Seen = {}

    async def add(self, message: Message) -> bool:
        # Contiguous seqs are the conversation's job (it allocates them under the row lock);
        # the primary key still refuses a seq used twice.
        result = await self._execute(self._insert, message_values(message))
        if not result.rowcount:  # (its client_id was used: nothing stored, the trigger did not run)
            return False
        if self._trigger is not None:
            conversations, members = self._trigger
            if conversations.posted(message):  # else unknown whether it ran: saves write what differs
                members.posted(message)
        return True

    async def get(self, conversation_id: str, seq: int) -> Message | None:
        row = await _first(self._execute, _MESSAGE_BY_KEY, {"k_conversation_id": conversation_id, "k_seq": seq})
        if row is None:
            return None
        self._seen[(conversation_id, seq)] = row
        return message_from_row(row)

    async def get_by_client_id(self, conversation_id: str, sender_id: str, client_id: str) -> Message | None:
        params = {"k_conversation_id": conversation_id, "k_sender_id": sender_id, "k_client_id": client_id}
        row = await _first(self._execute, _MESSAGE_BY_CLIENT_ID, params)
        return message_from_row(row) if row else None

    async def save(self, message: Message) -> None:
        await _save_message(self._execute, message_values(message), self._seen)

    async def page(self, conversation_id: str, *, before: int | None, after: int | None, limit: int) -> list[Message]:
        params = {"k_conversation_id": conversation_id, "k_limit": limit, "k_before": before, "k_after": after}
        # By position: a page is 50 rows, and rows by name cost more than the messages made from them.
        records = (await self._execute(_PAGES[before is not None, after is not None], params)).all()
        messages = [message_from_record(conversation_id, record) for record in records]
        if after is None:
            messages.reverse()
        return messages
