"""SQL repositories. Each runs its statements (``queries.py``) through its unit of work's
``execute``, which holds the transaction and turns the driver's errors into domain errors."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Executable

from convocore.adapters.sql import queries as q
from convocore.adapters.sql.queries import Execute, Seen
from convocore.adapters.sql.rows import (
    CONVERSATION_RECORD,
    MEMBER_RECORD,
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
from convocore.adapters.sql.statements import Params, Row
from convocore.application.ports import (
    ConversationRepository,
    InboxCursor,
    InboxEntry,
    MemberRepository,
    MessageRepository,
    SessionRepository,
    TitleCursor,
    UserRepository,
)
from convocore.domain.conversations import Conversation, Member
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User, normalize_username

_SPLIT = len(CONVERSATION_RECORD)


async def _first(execute: Execute, statement: Executable, params: Params | None = None) -> Row | None:
    return (await execute(statement, params)).mappings().first()


async def _all(execute: Execute, statement: Executable, params: Params | None = None) -> list[Row]:
    return (await execute(statement, params)).mappings().all()


class SqlUserRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def add(self, user: User) -> None:
        await self._execute(q.USER_INSERT, user_values(user))

    async def get(self, user_id: str) -> User | None:
        row = await _first(self._execute, q.USER_BY_ID, {"k_id": user_id})
        return user_from_row(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        row = await _first(self._execute, q.USER_BY_KEY, {"k_username_key": normalize_username(username)})
        return user_from_row(row) if row else None

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        if not user_ids:
            return {}
        rows = await _all(self._execute, q.users_by_ids(list(user_ids)))
        found = {user.id: user for user in map(user_from_row, rows)}
        return {uid: found[uid] for uid in user_ids if uid in found}

    async def search(self, *, prefix: str, after: str | None, limit: int) -> list[User]:
        params = {"k_pattern": q.like_escape(normalize_username(prefix)) + "%", "k_limit": limit, "k_after": after}
        rows = await _all(self._execute, q.USER_SEARCH[after is not None], params)
        return [user_from_row(row) for row in rows]


class SqlSessionRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._seen: Seen = {}

    async def add(self, session: AuthSession) -> None:
        values = session_values(session)
        await self._execute(q.SESSION_INSERT, values)
        self._seen[(session.id,)] = values

    async def get(self, session_id: str, *, for_update: bool = False) -> AuthSession | None:
        return await self._find("id", session_id, for_update=for_update)

    async def get_by_access_hash(self, access_hash: str) -> AuthSession | None:
        return await self._find("access_hash", access_hash)

    async def get_by_refresh_hash(self, refresh_hash: str, *, for_update: bool = False) -> AuthSession | None:
        return await self._find("refresh_hash", refresh_hash, for_update=for_update)

    async def save(self, session: AuthSession) -> None:
        await q.save_session(self._execute, session_values(session), self._seen)

    async def retire_refresh_hash(self, refresh_hash: str, *, session_id: str, retired_at: datetime) -> None:
        values = {"refresh_hash": refresh_hash, "session_id": session_id, "retired_at": retired_at}
        await self._execute(q.RETIRED_INSERT, values)

    async def get_by_retired_refresh_hash(self, refresh_hash: str) -> AuthSession | None:
        row = await _first(self._execute, q.SESSION_BY_RETIRED, {"k_refresh_hash": refresh_hash})
        return session_from_row(row) if row else None

    async def _find(self, column: str, value: str, *, for_update: bool = False) -> AuthSession | None:
        statement = q.SESSION_FOR_UPDATE_BY[column] if for_update else q.SESSION_BY[column]
        row = await _first(self._execute, statement, {f"k_{column}": value})
        if row is None:
            return None
        self._seen[(row["id"],)] = row
        return session_from_row(row)


class SqlConversationRepository:
    def __init__(self, execute: Execute, dialect: str, members: "SqlMemberRepository") -> None:
        self._execute = execute
        self._sqlite = dialect == "sqlite"
        self._members = members
        self._seen: Seen = {}

    async def add(self, conversation: Conversation) -> None:
        values = conversation_values(conversation)
        await self._execute(q.CONVERSATION_INSERT, values)
        self._seen[(conversation.id,)] = values

    async def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        statement = q.CONVERSATION_FOR_UPDATE if for_update else q.CONVERSATION_BY_ID
        return self._seen_row(await _first(self._execute, statement, {"k_id": conversation_id}))

    async def get_with_member(
        self, conversation_id: str, user_id: str, *, for_update: bool = False
    ) -> tuple[Conversation | None, Member | None]:
        params = {"k_id": conversation_id, "k_user_id": user_id}
        # By position: rows by name cost more than the entities made from them.
        if for_update and not self._sqlite:
            records = (await self._execute(q.CONVERSATION_WITH_MEMBER_LOCKED, params)).all()
            if not records:  # not a member, or no such conversation: which, as of now
                conversation = await self.get(conversation_id, for_update=True)
                if conversation is None:
                    return None, None
                return conversation, await self._members.get(conversation_id, user_id)
        else:
            records = (await self._execute(q.CONVERSATION_WITH_MEMBER, params)).all()
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
        return self._seen_row(await _first(self._execute, q.CONVERSATION_BY_DIRECT_KEY, {"k_direct_key": key}))

    def _seen_row(self, row: Row | None) -> Conversation | None:
        if row is None:
            return None
        self._seen[(row["id"],)] = row
        return conversation_from_row(row)

    async def save(self, conversation: Conversation) -> None:
        await q.save_conversation(self._execute, conversation_values(conversation), self._seen)

    def posted(self, message: Message) -> bool:
        """Note what the ``messages_posted`` trigger wrote as ``message`` was stored (so saving
        the conversation as posting left it writes nothing more). False when this unit has not
        read the row, or the trigger did not move it (an older message)."""
        key = (message.conversation_id,)
        known = self._seen.get(key)
        if known is None or known["last_seq"] >= message.seq:  # the trigger's own condition
            return False
        self._seen[key] = {**known, "last_seq": message.seq, "last_activity_at": message.created_at}
        return True

    async def inbox(self, *, user_id: str, before: InboxCursor | None, limit: int) -> list[InboxEntry]:
        params: dict[str, Any] = {"k_user_id": user_id, "k_limit": limit}
        if before is not None:
            params.update(k_at=before.last_activity_at, k_id=before.conversation_id)
        rows = await _all(self._execute, q.INBOX[before is not None], params)
        return [
            InboxEntry(
                conversation=conversation_from_row(row),
                member=member_from_row(row),
                last_message=message_from_row(row) if row[q.messages.c.seq] is not None else None,
            )
            for row in rows
        ]

    async def memberships(self, user_id: str) -> list[tuple[str, int]]:
        return [(row.id, row.last_seq) for row in await self._execute(q.MEMBERSHIPS, {"k_user_id": user_id})]

    async def public(self, *, query: str, after: TitleCursor | None, limit: int) -> list[Conversation]:
        params: dict[str, Any] = {"k_pattern": "%" + q.like_escape(query) + "%", "k_limit": limit}
        if after is not None:
            params.update(k_title=after.title, k_id=after.conversation_id)
        rows = await _all(self._execute, q.PUBLIC[after is not None], params)
        return [conversation_from_row(row) for row in rows]


class SqlMemberRepository:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._seen: Seen = {}

    async def add(self, member: Member) -> None:
        values = member_values(member)
        await self._execute(q.MEMBER_INSERT, values)
        self._seen[(member.conversation_id, member.user_id)] = values

    async def get(self, conversation_id: str, user_id: str) -> Member | None:
        row = await _first(self._execute, q.MEMBER_BY_KEY, {"k_conversation_id": conversation_id, "k_user_id": user_id})
        if row is None:
            return None
        self._seen[(conversation_id, user_id)] = row
        return member_from_row(row)

    def remember(self, row: Mapping[str, Any]) -> None:
        """A member row read along with another table's (what a save compares with)."""
        self._seen[(row["conversation_id"], row["user_id"])] = row

    async def list(self, conversation_id: str) -> list[Member]:
        rows = await _all(self._execute, q.MEMBERS_OF, {"k_conversation_id": conversation_id})
        return [member_from_row(row) for row in rows]

    async def save(self, member: Member) -> None:
        await q.save_member(self._execute, member_values(member), self._seen)

    def posted(self, message: Message) -> None:
        """Note what the ``messages_posted`` trigger wrote of the sender's row for ``message``."""
        key = (message.conversation_id, message.sender_id)
        known = self._seen.get(key)
        if known is not None:
            self._seen[key] = {**known, "last_read_seq": message.seq}

    async def remove(self, conversation_id: str, user_id: str) -> None:
        await self._execute(q.MEMBER_DELETE, {"k_conversation_id": conversation_id, "k_user_id": user_id})
        self._seen.pop((conversation_id, user_id), None)


class SqlMessageRepository:
    """Storing a message runs the schema's ``messages_posted`` trigger, which moves its
    conversation's last seq and activity time and its sender's read marker: a post's
    bookkeeping, done there and only there. The unit's conversation and member repositories are
    told what it wrote, so the use case's saves find nothing left to write."""

    def __init__(
        self, execute: Execute, dialect: str, conversations: SqlConversationRepository, members: SqlMemberRepository
    ) -> None:
        self._execute = execute
        self._insert = q.MESSAGE_INSERT[dialect]
        self._conversations, self._members = conversations, members
        self._seen: Seen = {}

    async def add(self, message: Message) -> bool:
        # Contiguous seqs are the conversation's job (it allocates them under the row lock);
        # the primary key still refuses a seq used twice.
        result = await self._execute(self._insert, message_values(message))
        if not result.rowcount:  # its client_id was used: nothing stored, the trigger did not run
            return False
        if self._conversations.posted(message):
            self._members.posted(message)
        return True

    async def get(self, conversation_id: str, seq: int) -> Message | None:
        row = await _first(self._execute, q.MESSAGE_BY_KEY, {"k_conversation_id": conversation_id, "k_seq": seq})
        if row is None:
            return None
        self._seen[(conversation_id, seq)] = row
        return message_from_row(row)

    async def get_by_client_id(self, conversation_id: str, sender_id: str, client_id: str) -> Message | None:
        params = {"k_conversation_id": conversation_id, "k_sender_id": sender_id, "k_client_id": client_id}
        row = await _first(self._execute, q.MESSAGE_BY_CLIENT_ID, params)
        return message_from_row(row) if row else None

    async def save(self, message: Message) -> None:
        await q.save_message(self._execute, message_values(message), self._seen)

    async def page(self, conversation_id: str, *, before: int | None, after: int | None, limit: int) -> list[Message]:
        params = {"k_conversation_id": conversation_id, "k_limit": limit, "k_before": before, "k_after": after}
        records = (await self._execute(q.PAGES[before is not None, after is not None], params)).all()
        found = [message_from_record(conversation_id, record) for record in records]
        if after is None:
            found.reverse()
        return found


class Repositories:
    """A unit of work's repositories, all running their statements through ``execute``."""

    def __init__(self, execute: Execute, dialect: str) -> None:
        # Typed as the ports: the UnitOfWork protocol's attributes are mutable, hence invariant.
        self.users: UserRepository = SqlUserRepository(execute)
        self.sessions: SessionRepository = SqlSessionRepository(execute)
        members = SqlMemberRepository(execute)
        conversations = SqlConversationRepository(execute, dialect, members)
        self.conversations: ConversationRepository = conversations
        self.members: MemberRepository = members
        self.messages: MessageRepository = SqlMessageRepository(execute, dialect, conversations, members)
