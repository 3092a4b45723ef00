"""Every port the core needs, as structural Protocols. Adapters conform without inheriting."""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import TracebackType
from typing import Protocol, Self

from convocore.domain.conversations import Conversation, Member
from convocore.domain.events import Event
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxCursor:
    last_activity_at: datetime
    conversation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    conversation: Conversation
    member: Member
    last_message: Message | None

    @property
    def cursor(self) -> InboxCursor:
        return InboxCursor(last_activity_at=self.conversation.last_activity_at, conversation_id=self.conversation.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class TitleCursor:
    title: str
    conversation_id: str


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Raises ``Conflict`` (field ``username``) when the name is taken, in any case."""

    async def get(self, user_id: str) -> User | None: ...
    async def get_by_username(self, username: str) -> User | None: ...
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]: ...
    async def search(self, *, prefix: str, after: str | None, limit: int) -> list[User]:
        """Users whose username starts with ``prefix`` (any case), ordered by username key."""


class SessionRepository(Protocol):
    async def add(self, session: AuthSession) -> None: ...
    async def get(self, session_id: str, *, for_update: bool = False) -> AuthSession | None:
        """``for_update`` holds the row until commit: a refresh and a logout take turns."""

    async def get_by_access_hash(self, access_hash: str) -> AuthSession | None: ...
    async def get_by_refresh_hash(self, refresh_hash: str, *, for_update: bool = False) -> AuthSession | None:
        """``for_update``: as ``get``; a second refresh with the same token then finds none."""

    async def save(self, session: AuthSession) -> None: ...
    async def retire_refresh_hash(self, refresh_hash: str, *, session_id: str, retired_at: datetime) -> None:
        """Remember a refresh token rotated away, so that its reuse is recognised."""

    async def get_by_retired_refresh_hash(self, refresh_hash: str) -> AuthSession | None:
        """The session a refresh token rotated away belonged to."""


class ConversationRepository(Protocol):
    async def add(self, conversation: Conversation) -> None:
        """Raises ``Conflict`` when a direct conversation for the pair already exists."""

    async def get(self, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        """``for_update`` holds the row until commit, so sequence numbers never race."""

    async def get_with_member(
        self, conversation_id: str, user_id: str, *, for_update: bool = False
    ) -> tuple[Conversation | None, Member | None]:
        """The conversation and the user's membership of it (None where either is missing),
        read as ``get`` and then ``MemberRepository.get`` would, the member after the lock."""

    async def get_direct(self, key: str) -> Conversation | None: ...
    async def save(self, conversation: Conversation) -> None: ...
    async def inbox(self, *, user_id: str, before: InboxCursor | None, limit: int) -> list[InboxEntry]:
        """The user's conversations, most recent activity first, strictly after ``before``."""

    async def memberships(self, user_id: str) -> list[tuple[str, int]]:
        """(conversation id, last seq) for every conversation the user belongs to."""

    async def public(self, *, query: str, after: TitleCursor | None, limit: int) -> list[Conversation]:
        """Public groups whose title contains ``query`` (ignoring ASCII case), ordered by title then id."""


class MemberRepository(Protocol):
    async def add(self, member: Member) -> None: ...
    async def get(self, conversation_id: str, user_id: str) -> Member | None: ...
    async def list(self, conversation_id: str) -> list[Member]:
        """Members in the order they joined."""

    async def save(self, member: Member) -> None: ...
    async def remove(self, conversation_id: str, user_id: str) -> None: ...


class MessageRepository(Protocol):
    async def add(self, message: Message) -> bool:
        """Store a new message; False, storing nothing, when its sender already used its
        ``client_id`` in the conversation. Raises ``Conflict`` (field ``seq``) for a seq taken."""

    async def get(self, conversation_id: str, seq: int) -> Message | None: ...
    async def get_by_client_id(self, conversation_id: str, sender_id: str, client_id: str) -> Message | None: ...
    async def save(self, message: Message) -> None: ...
    async def page(self, conversation_id: str, *, before: int | None, after: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages with after < seq < before, ascending. With only ``before``
        (or neither) the page sits at the newest end of the range; otherwise at its oldest."""


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without ``commit()`` rolls everything back."""

    users: UserRepository
    sessions: SessionRepository
    conversations: ConversationRepository
    members: MemberRepository
    messages: MessageRepository

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Service(Protocol):
    """An adapter with a lifetime: started before the app serves, stopped after."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Probe(Protocol):
    """A service we depend on (the database, Redis), asked whether it answers right now."""

    async def ping(self) -> None:
        """Returns once it answers; raises ``Unavailable`` when it does not."""


class Storage(UnitOfWorkFactory, Service, Probe, Protocol):
    """Memory or a SQL database: units of work, a lifetime and a health check."""

    def time_statements(self, observe: Callable[[float], None]) -> None:
        """Tell ``observe`` how long each statement takes, in seconds (nothing for memory)."""


class Publisher(Protocol):
    """Where use cases hand committed events, for live delivery."""

    async def publish(self, event: Event) -> None: ...


class Broadcaster(Publisher, Service, Probe, Protocol):
    """Live delivery of committed events to every process's sockets: in-process, or through
    Redis across processes. Everything the app needs of it, whichever it is."""

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Hear every event: this process's as published, other processes' as they arrive."""

    def on_gap(self, callback: Callable[[], None]) -> None:
        """Be told when events may have been missed (the feed came back after an outage)."""

    def follow(self, interest: str) -> Awaitable[None]:
        """Hear of ``interest`` (see ``realtime.interests``) from now on; done once events flow."""

    def unfollow(self, interest: str) -> None: ...


class Ending(Enum):
    """Why the server ends a live stream; the value is what the client is told."""

    EXPIRED = "the access token expired; reconnect with a fresh one and resume"
    LOGGED_OUT = "logged out"
    NOT_A_MEMBER = "no longer a member"
    TOO_SLOW = "send queue overflowed; reconnect and resume"
    GOING_AWAY = "server shutting down"


class Outlet(Protocol):
    """A socket's sending side. A frame is an encoded event, which the core passes on unread."""

    def send(self, frame: str) -> Awaitable[None] | None:
        """Write ``frame``: None once it is written (or taken to be), else an awaitable that
        finishes writing it once the socket takes more. A client already gone is not an error."""

    async def close(self, ending: Ending) -> None:
        """Write what was taken, then end the socket saying why."""


class Frames(Protocol):
    """How the sockets spell what the real-time engine sends (the entrypoint's wire format)."""

    def event(self, event: Event) -> str:
        """The frame for ``event``; empty for events only the server acts on."""

    def resync(self, conversation_id: str, last_seq: int) -> str:
        """Too much was missed to replay: the client refetches history, live goes on after ``last_seq``."""


class StreamObserver(Protocol):
    """What the real-time engine reports as it works (the metrics). Called inline: cheap."""

    deliveries: int  # frames offered to sockets, added to per delivery (a method call there cost more)

    def socket_opened(self) -> None: ...
    def socket_closed(self) -> None: ...
    def dropped(self) -> None: ...  # a stream ended because its send queue overflowed
    def resumed(self) -> None: ...  # a stream picked up from a client's last seq
    def resynced(self) -> None: ...  # a gap too large to replay: the client was told to resync


class PresenceStore(Protocol):
    """Who has a live socket anywhere. Entries of a process that dies expire on their own."""

    async def connected(self, user_id: str) -> bool:
        """Count a socket in; True when the user was offline everywhere until now."""

    async def disconnected(self, user_id: str) -> bool:
        """Count a socket out; True when the user has no socket left anywhere."""

    async def expired(self) -> list[str]:
        """Users whose last socket was on a process that stopped refreshing; each reported once."""

    async def online(self, user_ids: Sequence[str]) -> set[str]: ...


class RateLimiter(Protocol):
    """Budgets per key (a user, a user's typing): at most ``limit`` events per ``window_s``."""

    async def hit(self, key: str, *, limit: int, window_s: float) -> float | None:
        """Count one event; None when within budget, else the seconds until there is room."""


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...
    async def verify(self, password_hash: str, password: str) -> bool: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


class TokenGenerator(Protocol):
    """Opaque bearer tokens: random strings, stored only as one-way hashes."""

    def new_token(self) -> str: ...
    def digest(self, token: str) -> str: ...
