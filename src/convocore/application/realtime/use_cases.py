"""Use cases behind the live sockets: opening a stream, catching up, typing, presence."""

from dataclasses import dataclass

from convocore.application.conversations import load_for_member
from convocore.application.messages import Budget, spend
from convocore.application.ports import Clock, PresenceStore, Publisher, RateLimiter, UnitOfWorkFactory
from convocore.domain.errors import NotFound
from convocore.domain.events import PresenceChanged, UserTyping
from convocore.domain.messages import Message


class OpenStream:
    """A member opening a live stream of one conversation: its current last seq."""

    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, user_id: str, conversation_id: str) -> int:
        async with self._uow() as uow:
            conversation, _ = await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
        return conversation.last_seq


class ListMemberships:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, user_id: str) -> dict[str, int]:
        """Conversation id -> last seq, for every conversation the user belongs to."""
        async with self._uow() as uow:
            return dict(await uow.conversations.memberships(user_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    messages: list[Message]
    last_seq: int  # the conversation's newest seq when read

    @property
    def complete(self) -> bool:
        return not self.messages or self.messages[-1].seq >= self.last_seq


class CatchUp:
    """Messages after ``after`` for a stream that missed some. Trusted callers only: the socket
    hub, which checked membership when the stream opened and drops it when the member leaves."""

    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, conversation_id: str, after: int, limit: int) -> Backlog:
        async with self._uow() as uow:
            conversation = await uow.conversations.get(conversation_id)
            if conversation is None:
                raise NotFound("no such conversation")
            # A since past the last seq counts as the last (and is no number storage must hold).
            after = min(after, conversation.last_seq)
            found = await uow.messages.page(conversation_id, before=None, after=after, limit=limit)
        return Backlog(messages=found, last_seq=conversation.last_seq)


TYPING_BUDGET = Budget(limit=5, window_s=5)


class SignalTyping:
    """Typing notices are ephemeral and budgeted per user."""

    def __init__(self, *, broadcaster: Publisher, limiter: RateLimiter, budget: Budget = TYPING_BUDGET) -> None:
        self._broadcaster, self._limiter, self._budget = broadcaster, limiter, budget

    async def execute(self, *, user_id: str, conversation_id: str) -> None:
        await spend(self._limiter, self._budget, f"typing:{user_id}", "typing notices")
        await self._broadcaster.publish(UserTyping(conversation_id=conversation_id, user_id=user_id))


class ChargeResume:
    """A resume replays from storage: budgeted per person as sends are, so a client resuming in a
    loop cannot read storage as fast as it can ask."""

    def __init__(self, *, limiter: RateLimiter, budget: Budget) -> None:
        self._limiter, self._budget = limiter, budget

    async def execute(self, *, user_id: str) -> None:
        await spend(self._limiter, self._budget, f"resume:{user_id}", "resumes")


class TrackPresence:
    """Announce a person online on their first socket anywhere and offline after their last."""

    def __init__(self, *, uow: UnitOfWorkFactory, presence: PresenceStore, broadcaster: Publisher) -> None:
        self._uow, self._presence, self._broadcaster = uow, presence, broadcaster

    async def connected(self, *, user_id: str) -> None:
        if await self._presence.connected(user_id):
            await self._announce(user_id, online=True)

    async def disconnected(self, *, user_id: str) -> None:
        if await self._presence.disconnected(user_id):
            await self._announce(user_id, online=False)

    async def reap(self) -> int:
        """Announce offline the users of processes that died; returns how many."""
        gone = await self._presence.expired()
        for user_id in gone:
            await self._announce(user_id, online=False)
        return len(gone)

    async def _announce(self, user_id: str, *, online: bool) -> None:
        async with self._uow() as uow:
            conversation_ids = tuple(cid for cid, _ in await uow.conversations.memberships(user_id))
        if conversation_ids:
            await self._broadcaster.publish(
                PresenceChanged(user_id=user_id, online=online, conversation_ids=conversation_ids)
            )


class WhoIsOnline:
    """A member asking which members of a conversation have a live socket anywhere."""

    def __init__(self, *, uow: UnitOfWorkFactory, presence: PresenceStore) -> None:
        self._uow, self._presence = uow, presence

    async def execute(self, *, user_id: str, conversation_id: str) -> list[str]:
        async with self._uow() as uow:
            await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
            members = [m.user_id for m in await uow.members.list(conversation_id)]
        online = await self._presence.online(members)
        return [uid for uid in members if uid in online]


class SessionAlive:
    """Whether a login still stands: sockets re-check after missing events (a Redis outage)."""

    def __init__(self, *, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, *, session_id: str) -> bool:
        async with self._uow() as uow:
            session = await uow.sessions.get(session_id)
        return session is not None and session.revoked_at is None and self._clock.now() < session.access_expires_at
