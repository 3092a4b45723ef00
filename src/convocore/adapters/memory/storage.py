"""In-memory storage: production code for the embedded mode and for tests.

Transactions are real: a unit of work holds the store's lock for its whole block (so it is
serialisable) and keeps an undo log, replayed backwards unless ``commit()`` was called.
Entities go in and come out as copies, so nothing changes behind the store's back.
"""

import asyncio
import bisect
import copy
from collections.abc import Callable, MutableMapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

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
from convocore.domain.errors import Conflict
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User, normalize_username

Undo = Callable[[], None]


class MemoryStore:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.user_ids_by_key: dict[str, str] = {}
        self.user_keys: list[str] = []  # sorted, for prefix search
        self.sessions: dict[str, AuthSession] = {}
        self.sessions_by_access: dict[str, str] = {}
        self.sessions_by_refresh: dict[str, str] = {}
        self.retired_refresh: dict[str, str] = {}  # a rotated-away refresh hash -> its session
        self.conversations: dict[str, Conversation] = {}
        self.directs: dict[str, str] = {}
        self.members: dict[str, dict[str, Member]] = {}
        self.memberships: dict[str, dict[str, None]] = {}
        self.messages: dict[str, list[Message]] = {}
        self.client_ids: dict[tuple[str, str, str], int] = {}
        self.lock = asyncio.Lock()


class _Journal:
    def __init__(self) -> None:
        self.undo: list[Undo] = []

    def put(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        if key in mapping:
            old = mapping[key]
            self.undo.append(lambda: mapping.__setitem__(key, old))
        else:
            self.undo.append(lambda: mapping.pop(key, None))
        mapping[key] = value

    def drop(self, mapping: MutableMapping[Any, Any], key: Any) -> None:
        if key in mapping:
            old = mapping.pop(key)
            self.undo.append(lambda: mapping.__setitem__(key, old))


T = TypeVar("T")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """Case folding as SQLite's lower() does it, so every adapter matches the same titles."""
    return text.translate(_ASCII_LOWER)


def _copy(entity: T) -> T:
    return copy.copy(entity)


class MemoryUserRepository:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, user: User) -> None:
        key = user.username_key
        if key in self._s.user_ids_by_key:
            raise Conflict("that username is taken", field="username")
        self._j.put(self._s.users, user.id, _copy(user))
        self._j.put(self._s.user_ids_by_key, key, user.id)
        bisect.insort(self._s.user_keys, key)
        self._j.undo.append(lambda: self._s.user_keys.remove(key))

    async def get(self, user_id: str) -> User | None:
        user = self._s.users.get(user_id)
        return _copy(user) if user else None

    async def get_by_username(self, username: str) -> User | None:
        user_id = self._s.user_ids_by_key.get(normalize_username(username))
        return await self.get(user_id) if user_id else None

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        return {uid: _copy(self._s.users[uid]) for uid in user_ids if uid in self._s.users}

    async def search(self, *, prefix: str, after: str | None, limit: int) -> list[User]:
        prefix = normalize_username(prefix)
        keys = self._s.user_keys
        start = (
            bisect.bisect_right(keys, after)
            if after is not None and after >= prefix
            else bisect.bisect_left(keys, prefix)
        )
        found: list[User] = []
        for key in keys[start:]:
            if not key.startswith(prefix) or len(found) >= limit:
                break
            found.append(_copy(self._s.users[self._s.user_ids_by_key[key]]))
        return found


class MemorySessionRepository:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, session: AuthSession) -> None:
        if session.id in self._s.sessions:
            raise Conflict("a session with this id exists", field="id")
        await self.save(session)

    async def get(self, session_id: str, *, for_update: bool = False) -> AuthSession | None:
        session = self._s.sessions.get(session_id)
        return _copy(session) if session else None

    async def get_by_access_hash(self, access_hash: str) -> AuthSession | None:
        session_id = self._s.sessions_by_access.get(access_hash)
        return await self.get(session_id) if session_id else None

    async def get_by_refresh_hash(self, refresh_hash: str, *, for_update: bool = False) -> AuthSession | None:
        session_id = self._s.sessions_by_refresh.get(refresh_hash)
        return await self.get(session_id) if session_id else None

    async def retire_refresh_hash(self, refresh_hash: str, *, session_id: str, retired_at: datetime) -> None:
        self._j.put(self._s.retired_refresh, refresh_hash, session_id)

    async def get_by_retired_refresh_hash(self, refresh_hash: str) -> AuthSession | None:
        session_id = self._s.retired_refresh.get(refresh_hash)
        return await self.get(session_id) if session_id else None

    async def save(self, session: AuthSession) -> None:
        old = self._s.sessions.get(session.id)
        if old is not None:
            self._j.drop(self._s.sessions_by_access, old.access_hash)
            self._j.drop(self._s.sessions_by_refresh, old.refresh_hash)
        self._j.put(self._s.sessions, session.id, _copy(session))
        self._j.put(self._s.sessions_by_access, session.access_hash, session.id)
        self._j.put(self._s.sessions_by_refresh, session.refresh_hash, session.id)


class MemoryConversationRepository:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, conversation: Conversation) -> None:
        if conversation.direct_key is not None:
            if conversation.direct_key in self._s.directs:
                raise Conflict("a direct conversation for this pair exists", field="members")
            self._j.put(self._s.directs, conversation.direct_key, conversation.id)
        self._j.put(self._s.conversations, conversation.id, _copy(conversation))
        self._j.put(self._s.members, conversation.id, {})
        self._j.put(self._s.messages, conversation.id, [])

    async def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        conversation = self._s.conversations.get(conversation_id)
        return _copy(conversation) if conversation else None

    async def get_with_member(
        self, conversation_id: str, user_id: str, *, for_update: bool = False
    ) -> tuple[Conversation | None, Member | None]:
        conversation = await self.get(conversation_id)
        if conversation is None:
            return None, None
        member = self._s.members.get(conversation_id, {}).get(user_id)
        return conversation, _copy(member) if member else None

    async def get_direct(self, key: str) -> Conversation | None:
        conversation_id = self._s.directs.get(key)
        return await self.get(conversation_id) if conversation_id else None

    async def save(self, conversation: Conversation) -> None:
        self._j.put(self._s.conversations, conversation.id, _copy(conversation))

    async def inbox(self, *, user_id: str, before: InboxCursor | None, limit: int) -> list[InboxEntry]:
        convs = [self._s.conversations[cid] for cid in self._s.memberships.get(user_id, {})]
        convs.sort(key=lambda c: (c.last_activity_at, c.id), reverse=True)
        if before is not None:
            mark = (before.last_activity_at, before.conversation_id)
            convs = [c for c in convs if (c.last_activity_at, c.id) < mark]
        entries = []
        for conv in convs[:limit]:
            history = self._s.messages[conv.id]
            entries.append(
                InboxEntry(
                    conversation=_copy(conv),
                    member=_copy(self._s.members[conv.id][user_id]),
                    last_message=_copy(history[-1]) if history else None,
                )
            )
        return entries

    async def memberships(self, user_id: str) -> list[tuple[str, int]]:
        return [(cid, self._s.conversations[cid].last_seq) for cid in self._s.memberships.get(user_id, {})]

    async def public(self, *, query: str, after: TitleCursor | None, limit: int) -> list[Conversation]:
        needle = _ascii_lower(query)
        found = [
            c
            for c in self._s.conversations.values()
            if c.public and c.title is not None and needle in _ascii_lower(c.title)
        ]
        found.sort(key=lambda c: (c.title or "", c.id))
        if after is not None:
            found = [c for c in found if (c.title or "", c.id) > (after.title, after.conversation_id)]
        return [_copy(c) for c in found[:limit]]


class MemoryMemberRepository:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, member: Member) -> None:
        roster = self._s.members.setdefault(member.conversation_id, {})
        if member.user_id in roster:
            raise Conflict("already a member", field="user_id")
        await self.save(member)

    async def get(self, conversation_id: str, user_id: str) -> Member | None:
        member = self._s.members.get(conversation_id, {}).get(user_id)
        return _copy(member) if member else None

    async def list(self, conversation_id: str) -> list[Member]:
        roster = self._s.members.get(conversation_id, {})
        return sorted((_copy(m) for m in roster.values()), key=lambda m: (m.joined_at, m.user_id))

    async def save(self, member: Member) -> None:
        self._j.put(self._s.members.setdefault(member.conversation_id, {}), member.user_id, _copy(member))
        self._j.put(self._s.memberships.setdefault(member.user_id, {}), member.conversation_id, None)

    async def remove(self, conversation_id: str, user_id: str) -> None:
        self._j.drop(self._s.members.get(conversation_id, {}), user_id)
        self._j.drop(self._s.memberships.get(user_id, {}), conversation_id)


class MemoryMessageRepository:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._s, self._j = store, journal

    async def add(self, message: Message) -> bool:
        history = self._s.messages.setdefault(message.conversation_id, [])
        key = (message.conversation_id, message.sender_id, message.client_id or "")
        if message.client_id is not None and key in self._s.client_ids:
            return False
        if message.seq != len(history) + 1:
            raise Conflict("seq must follow the last one", field="seq")
        history.append(_copy(message))
        self._j.undo.append(lambda: history.__delitem__(-1))
        if message.client_id is not None:
            self._j.put(self._s.client_ids, key, message.seq)
        return True

    async def get(self, conversation_id: str, seq: int) -> Message | None:
        history = self._s.messages.get(conversation_id, [])
        return _copy(history[seq - 1]) if 1 <= seq <= len(history) else None

    async def get_by_client_id(self, conversation_id: str, sender_id: str, client_id: str) -> Message | None:
        seq = self._s.client_ids.get((conversation_id, sender_id, client_id))
        return await self.get(conversation_id, seq) if seq else None

    async def save(self, message: Message) -> None:
        history = self._s.messages[message.conversation_id]
        old = history[message.seq - 1]
        history[message.seq - 1] = _copy(message)
        self._j.undo.append(lambda: history.__setitem__(message.seq - 1, old))

    async def page(self, conversation_id: str, *, before: int | None, after: int | None, limit: int) -> list[Message]:
        history = self._s.messages.get(conversation_id, [])
        lo = max(after or 0, 0)  # index of the first seq above `after`
        hi = len(history) if before is None else max(min(before - 1, len(history)), 0)
        if hi <= lo:
            return []
        window = history[lo:hi]
        chosen = window[max(len(window) - limit, 0) :] if after is None else window[:limit]
        return [_copy(m) for m in chosen]


class MemoryUnitOfWork:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._journal = _Journal()
        self.users: UserRepository = MemoryUserRepository(store, self._journal)
        self.sessions: SessionRepository = MemorySessionRepository(store, self._journal)
        self.conversations: ConversationRepository = MemoryConversationRepository(store, self._journal)
        self.members: MemberRepository = MemoryMemberRepository(store, self._journal)
        self.messages: MessageRepository = MemoryMessageRepository(store, self._journal)

    async def __aenter__(self) -> Self:
        await self._store.lock.acquire()
        self._journal.undo.clear()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for undo in reversed(self._journal.undo):
                undo()
        finally:
            self._journal.undo.clear()
            self._store.lock.release()

    async def commit(self) -> None:
        self._journal.undo.clear()


class MemoryUnitOfWorkFactory:
    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ping(self) -> None:
        return None  # memory always answers

    def time_statements(self, observe: Callable[[float], None]) -> None:
        return None  # no statements
