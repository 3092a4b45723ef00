"""Events published after a commit, for live delivery. Values, never mutated."""

from dataclasses import dataclass

from convocore.domain.conversations import Conversation, Member
from convocore.domain.messages import Message
from convocore.domain.users import User


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageCreated:
    message: Message

    @property
    def conversation_id(self) -> str:
        return self.message.conversation_id


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageUpdated:
    message: Message

    @property
    def conversation_id(self) -> str:
        return self.message.conversation_id


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDeleted:
    message: Message

    @property
    def conversation_id(self) -> str:
        return self.message.conversation_id


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberJoined:
    conversation_id: str
    member: Member
    user: User | None = None  # who joined, for clients to show without a lookup


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLeft:
    conversation_id: str
    user_id: str
    removed_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRoleChanged:
    conversation_id: str
    member: Member


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationUpdated:
    conversation: Conversation

    @property
    def conversation_id(self) -> str:
        return self.conversation.id


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMarkerMoved:
    conversation_id: str
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTyping:
    """Ephemeral: never stored."""

    conversation_id: str
    user_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceChanged:
    """A person came online (first socket anywhere) or went offline (last one gone)."""

    user_id: str
    online: bool
    conversation_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRevoked:
    """A login ended (logout); every socket opened with it must close."""

    user_id: str
    session_id: str


Event = (
    MessageCreated
    | MessageUpdated
    | MessageDeleted
    | MemberJoined
    | MemberLeft
    | MemberRoleChanged
    | ConversationUpdated
    | ReadMarkerMoved
    | UserTyping
    | PresenceChanged
    | SessionRevoked
)
