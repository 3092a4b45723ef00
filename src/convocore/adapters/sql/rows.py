"""Explicit mapping between table rows and domain entities, both ways."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table

from convocore.adapters.sql import tables
from convocore.domain.conversations import Conversation, Kind, Member, Role
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User

Values = dict[str, Any]
Row = Mapping[Any, Any]  # read by column name or by ``Column`` (statements.Row)
# Stored text to enum member by a dict lookup: calling the enum (``Role(text)``) runs
# ``EnumType.__call__`` in Python, many times the lookup, and a post reads a kind and a role. Anything
# else goes through the call, which raises as before.
_KINDS: dict[Any, Kind] = {kind.value: kind for kind in Kind}
_ROLES: dict[Any, Role] = {role.value: role for role in Role}
# And back: an enum member's ``value`` is an ``enum.property``, a descriptor written in Python.
_KIND_TEXT: dict[Kind, str] = {kind: kind.value for kind in Kind}
_ROLE_TEXT: dict[Role, str] = {role: role.value for role in Role}


def _kind(text: Any) -> Kind:
    return _KINDS.get(text) or Kind(text)


def _role(text: Any) -> Role:
    return _ROLES.get(text) or Role(text)


class _Columns:
    """A table's columns as plain attributes: a ColumnCollection's own attribute lookup cost
    more than reading the row (50 rows of 10 columns is a history page)."""

    def __init__(self, table: Table) -> None:
        self.__dict__.update({column.key: column for column in table.columns})

    def __getattr__(self, name: str) -> Column[Any]:  # only for the type checker: all are set
        raise AttributeError(name)


_USERS, _SESSIONS = _Columns(tables.users), _Columns(tables.sessions)
_CONVERSATIONS, _MEMBERS = _Columns(tables.conversations), _Columns(tables.members)
_MESSAGES = _Columns(tables.messages)


def user_from_row(row: Row) -> User:
    c = _USERS
    return User(
        id=row[c.id],
        username=row[c.username],
        display_name=row[c.display_name],
        password_hash=row[c.password_hash],
        created_at=row[c.created_at],
    )


def user_values(user: User) -> Values:
    return {
        "id": user.id,
        "username": user.username,
        "username_key": user.username_key,
        "display_name": user.display_name,
        "password_hash": user.password_hash,
        "created_at": user.created_at,
    }


def session_from_row(row: Row) -> AuthSession:
    c = _SESSIONS
    return AuthSession(
        id=row[c.id],
        user_id=row[c.user_id],
        access_hash=row[c.access_hash],
        access_expires_at=row[c.access_expires_at],
        refresh_hash=row[c.refresh_hash],
        refresh_expires_at=row[c.refresh_expires_at],
        created_at=row[c.created_at],
        revoked_at=row[c.revoked_at],
    )


def session_values(session: AuthSession) -> Values:
    return {
        "id": session.id,
        "user_id": session.user_id,
        "access_hash": session.access_hash,
        "access_expires_at": session.access_expires_at,
        "refresh_hash": session.refresh_hash,
        "refresh_expires_at": session.refresh_expires_at,
        "created_at": session.created_at,
        "revoked_at": session.revoked_at,
    }


def conversation_from_row(row: Row) -> Conversation:
    c = _CONVERSATIONS
    return Conversation(
        id=row[c.id],
        kind=_kind(row[c.kind]),
        title=row[c.title],
        public=row[c.public],
        created_by=row[c.created_by],
        created_at=row[c.created_at],
        last_activity_at=row[c.last_activity_at],
        last_seq=row[c.last_seq],
        member_count=row[c.member_count],
        direct_key=row[c.direct_key],
    )


def conversation_values(conversation: Conversation) -> Values:
    return {
        "id": conversation.id,
        "kind": _KIND_TEXT[conversation.kind],
        "title": conversation.title,
        "public": conversation.public,
        "created_by": conversation.created_by,
        "created_at": conversation.created_at,
        "last_activity_at": conversation.last_activity_at,
        "last_seq": conversation.last_seq,
        "member_count": conversation.member_count,
        "direct_key": conversation.direct_key,
    }


def member_from_row(row: Row) -> Member:
    c = _MEMBERS
    return Member(
        conversation_id=row[c.conversation_id],
        user_id=row[c.user_id],
        role=_role(row[c.role]),
        joined_at=row[c.joined_at],
        last_read_seq=row[c.last_read_seq],
    )


def member_values(member: Member) -> Values:
    return {
        "conversation_id": member.conversation_id,
        "user_id": member.user_id,
        "role": _ROLE_TEXT[member.role],
        "joined_at": member.joined_at,
        "last_read_seq": member.last_read_seq,
    }


def message_from_row(row: Row) -> Message:
    c = _MESSAGES
    return Message(
        id=row[c.id],
        conversation_id=row[c.conversation_id],
        seq=row[c.seq],
        sender_id=row[c.sender_id],
        body=row[c.body],
        client_id=row[c.client_id],
        reply_to=row[c.reply_to],
        created_at=row[c.created_at],
        edited_at=row[c.edited_at],
        deleted=row[c.deleted],
    )


# The order of each table's columns, as a ``select()`` of the table returns them and the
# ``*_from_record`` functions unpack them (checked below, at import).
CONVERSATION_RECORD = (
    "id",
    "kind",
    "title",
    "public",
    "created_by",
    "created_at",
    "last_activity_at",
    "last_seq",
    "member_count",
    "direct_key",
)
MEMBER_RECORD = ("conversation_id", "user_id", "role", "joined_at", "last_read_seq")


def conversation_from_record(record: Sequence[Any]) -> Conversation:
    id_, kind, title, public, created_by, created_at, last_activity_at, last_seq, member_count, direct_key = record
    return Conversation(
        id=id_,
        kind=_kind(kind),
        title=title,
        public=public,
        created_by=created_by,
        created_at=created_at,
        last_activity_at=last_activity_at,
        last_seq=last_seq,
        member_count=member_count,
        direct_key=direct_key,
    )


def member_from_record(record: Sequence[Any]) -> Member:
    conversation_id, user_id, role, joined_at, last_read_seq = record
    return Member(
        conversation_id=conversation_id,
        user_id=user_id,
        role=_role(role),
        joined_at=joined_at,
        last_read_seq=last_read_seq,
    )


# The order of the messages table's columns; a page reads all but the first (``PAGE_COLUMNS``),
# which ``message_from_record`` unpacks.
MESSAGE_RECORD = (
    "conversation_id",
    "seq",
    "id",
    "sender_id",
    "body",
    "client_id",
    "reply_to",
    "created_at",
    "edited_at",
    "deleted",
)
for _table, _record in (
    (tables.conversations, CONVERSATION_RECORD),
    (tables.members, MEMBER_RECORD),
    (tables.messages, MESSAGE_RECORD),
):
    if tuple(column.key for column in _table.columns) != _record:
        raise RuntimeError(f"the {_table.name} table's columns moved: update its record and from_record")

PAGE_COLUMNS = tuple(column for column in tables.messages.columns if column.key != "conversation_id")


def message_from_record(conversation_id: str, record: Sequence[Any]) -> Message:
    """A message of ``conversation_id`` from a row of ``PAGE_COLUMNS`` read by position
    (``Result.all()``): a page's rows share their conversation, which the query names, so it
    is not read back 51 times (each column read is a round through the sqlite3 module)."""
    seq, id_, sender_id, body, client_id, reply_to, created_at, edited_at, deleted = record
    return Message(
        id=id_,
        conversation_id=conversation_id,
        seq=seq,
        sender_id=sender_id,
        body=body,
        client_id=client_id,
        reply_to=reply_to,
        created_at=created_at,
        edited_at=edited_at,
        deleted=deleted,
    )


def message_values(message: Message) -> Values:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "body": message.body,
        "client_id": message.client_id,
        "reply_to": message.reply_to,
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "deleted": message.deleted,
    }
