"""SQL repositories. Each runs its statements through the unit of work's ``execute``, which
holds the transaction and turns the driver's errors into domain errors."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    RowMapping,
    Select,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)

from convocore.adapters.sql import tables
from convocore.adapters.sql.rows import (
    Values,
    conversation_from_row,
    conversation_values,
    member_from_row,
    member_values,
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

Execute = Callable[[Executable], Awaitable[CursorResult[Any]]]

_users, _sessions, _conversations = tables.users, tables.sessions, tables.conversations
_members, _messages = tables.members, tables.messages


async def _first(execute: Execute, statement: Executable) -> RowMapping | None:
    return (await execute(statement)).mappings().first()


async def _all(execute: Execute, statement: Executable) -> Sequence[RowMapping]:
    return (await execute(statement)).mappings().all()


async def _save(execute: Execute, table: Table, where: ColumnElement[bool], values: Values) -> None:
    """Update the row, or insert it when missing: ``save`` stores whatever it is given."""
    result = await execute(update(table).where(where).values(values))
    if result.rowcount == 0:
        await execute(insert(table).values(values))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _keyset_after(first: ColumnElement[Any], second: ColumnElement[Any], a: object, b: object) -> ColumnElement[bool]:
    """(first, second) > (a, b), spelled out: row-value comparison is not portable."""
    return or_(first > a, and_(first == a, second > b))


def _keyset_before(first: ColumnElement[Any], second: ColumnElement[Any], a: object, b: object) -> ColumnElement[bool]:
    return or_(first < a, and_(first == a, second < b))


class SqlAlchemyUserRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, user: User) -> None:
        await self._execute(insert(_users).values(user_values(user)))

    async def get(self, user_id: str) -> User | None:
        row = await _first(self._execute, _users.select().where(_users.c.id == user_id))
        return user_from_row(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        statement = _users.select().where(_users.c.username_key == normalize_username(username))
        row = await _first(self._execute, statement)
        return user_from_row(row) if row else None

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        rows = await _all(self._execute, _users.select().where(_users.c.id.in_(list(user_ids))))
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


class SqlAlchemySessionRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, session: AuthSession) -> None:
        await self._execute(insert(_sessions).values(session_values(session)))

    async def get(self, session_id: str) -> AuthSession | None:
        return await self._find(_sessions.c.id == session_id)

    async def get_by_access_hash(self, access_hash: str) -> AuthSession | None:
        return await self._find(_sessions.c.access_hash == access_hash)

    async def get_by_refresh_hash(self, refresh_hash: str) -> AuthSession | None:
        return await self._find(_sessions.c.refresh_hash == refresh_hash)

    async def save(self, session: AuthSession) -> None:
        await _save(self._execute, _sessions, _sessions.c.id == session.id, session_values(session))

    async def _find(self, where: ColumnElement[bool]) -> AuthSession | None:
        row = await _first(self._execute, _sessions.select().where(where))
        return session_from_row(row) if row else None


class SqlAlchemyConversationRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, conversation: Conversation) -> None:
        await self._execute(insert(_conversations).values(conversation_values(conversation)))

    async def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        statement = _conversations.select().where(_conversations.c.id == conversation_id)
        # PostgreSQL holds the row lock until commit. SQLite renders no FOR UPDATE: there every
        # unit of work already runs alone (see unit_of_work.create_engine).
        row = await _first(self._execute, statement.with_for_update() if for_update else statement)
        return conversation_from_row(row) if row else None

    async def get_direct(self, key: str) -> Conversation | None:
        row = await _first(self._execute, _conversations.select().where(_conversations.c.direct_key == key))
        return conversation_from_row(row) if row else None

    async def save(self, conversation: Conversation) -> None:
        where = _conversations.c.id == conversation.id
        await _save(self._execute, _conversations, where, conversation_values(conversation))

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
        c, m = _conversations.c, _members.c
        statement = (
            select(c.id, c.last_seq)
            .select_from(_members.join(_conversations, c.id == m.conversation_id))
            .where(m.user_id == user_id)
        )
        return [(row.id, row.last_seq) for row in await self._execute(statement)]

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


class SqlAlchemyMemberRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, member: Member) -> None:
        await self._execute(insert(_members).values(member_values(member)))

    async def get(self, conversation_id: str, user_id: str) -> Member | None:
        row = await _first(self._execute, _members.select().where(_key(conversation_id, user_id)))
        return member_from_row(row) if row else None

    async def list(self, conversation_id: str) -> list[Member]:
        m = _members.c
        statement = _members.select().where(m.conversation_id == conversation_id).order_by(m.joined_at, m.user_id)
        return [member_from_row(row) for row in await _all(self._execute, statement)]

    async def save(self, member: Member) -> None:
        where = _key(member.conversation_id, member.user_id)
        await _save(self._execute, _members, where, member_values(member))

    async def remove(self, conversation_id: str, user_id: str) -> None:
        await self._execute(_members.delete().where(_key(conversation_id, user_id)))


def _key(conversation_id: str, user_id: str) -> ColumnElement[bool]:
    return and_(_members.c.conversation_id == conversation_id, _members.c.user_id == user_id)


class SqlAlchemyMessageRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, message: Message) -> None:
        # Contiguous seqs are the conversation's job (it allocates them under the row lock);
        # the primary key still refuses a seq used twice.
        await self._execute(insert(_messages).values(message_values(message)))

    async def get(self, conversation_id: str, seq: int) -> Message | None:
        m = _messages.c
        row = await _first(self._execute, _messages.select().where(m.conversation_id == conversation_id, m.seq == seq))
        return message_from_row(row) if row else None

    async def get_by_client_id(self, conversation_id: str, sender_id: str, client_id: str) -> Message | None:
        m = _messages.c
        where = and_(m.conversation_id == conversation_id, m.sender_id == sender_id, m.client_id == client_id)
        row = await _first(self._execute, _messages.select().where(where))
        return message_from_row(row) if row else None

    async def save(self, message: Message) -> None:
        m = _messages.c
        where = and_(m.conversation_id == message.conversation_id, m.seq == message.seq)
        await self._execute(update(_messages).where(where).values(message_values(message)))

    async def page(self, conversation_id: str, *, before: int | None, after: int | None, limit: int) -> list[Message]:
        m = _messages.c
        statement = _messages.select().where(m.conversation_id == conversation_id).limit(limit)
        if before is not None:
            statement = statement.where(m.seq < before)
        if after is not None:
            # Oldest end of the range: an ascending range scan on the primary key.
            rows = await _all(self._execute, statement.where(m.seq > after).order_by(m.seq))
            return [message_from_row(row) for row in rows]
        # Newest end: walk the key backwards, then put the page in reading order.
        rows = await _all(self._execute, statement.order_by(m.seq.desc()))
        return [message_from_row(row) for row in reversed(rows)]
