"""Wire types (msgspec Structs) for the HTTP API, and the conversions from domain objects."""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from convocore.application.accounts import IssuedTokens
from convocore.application.conversations import ConversationDetail
from convocore.application.ports import InboxCursor, InboxEntry, TitleCursor
from convocore.domain.conversations import TITLE_MAX, Conversation, Member
from convocore.domain.errors import Invalid
from convocore.domain.messages import BODY_MAX, CLIENT_ID_MAX, Message
from convocore.domain.users import DISPLAY_NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, USERNAME_RE, User

Body = Annotated[str, msgspec.Meta(min_length=1, max_length=BODY_MAX)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Seq = Annotated[int, msgspec.Meta(ge=0)]


class In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies: unknown fields are an error, not silently dropped."""


Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=f"^{USERNAME_RE.pattern}$")]
Password = Annotated[str, msgspec.Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class RegisterIn(In):
    username: Username
    password: Password
    display_name: Annotated[str, msgspec.Meta(max_length=DISPLAY_NAME_MAX)] | None = None


class LoginIn(In):
    # Loose on purpose: a login with a malformed name is just a failed login (401), not a hint.
    username: Annotated[str, msgspec.Meta(max_length=256)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class RefreshIn(In):
    refresh_token: Annotated[str, msgspec.Meta(max_length=256)]


class StartConversationIn(In):
    kind: Literal["direct", "group"]
    members: Annotated[list[Id], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    title: Annotated[str, msgspec.Meta(max_length=TITLE_MAX)] | None = None
    public: bool = False


class UpdateConversationIn(In):
    title: Annotated[str, msgspec.Meta(max_length=TITLE_MAX)] | None = None
    public: bool | None = None


class AddMemberIn(In):
    user_id: Id
    role: Literal["member", "admin"] = "member"


class ChangeRoleIn(In):
    role: Literal["owner", "admin", "member"]


class MarkReadIn(In):
    seq: Seq


class PostMessageIn(In):
    conversation_id: Id
    body: Body
    client_id: ClientId | None = None
    reply_to: Annotated[int, msgspec.Meta(ge=1)] | None = None


class EditMessageIn(In):
    body: Body


class UserOut(msgspec.Struct, kw_only=True):
    id: str
    username: str
    display_name: str
    created_at: datetime


class TokensOut(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    expires_in: int
    user: UserOut
    token_type: str = "bearer"


class UserPage(msgspec.Struct, kw_only=True):
    items: list[UserOut]
    next_cursor: str | None


class MessageOut(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    body: str
    client_id: str | None
    reply_to: int | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool


class MessagePage(msgspec.Struct, kw_only=True):
    items: list[MessageOut]
    has_more: bool


class MemberOut(msgspec.Struct, kw_only=True):
    conversation_id: str
    user_id: str
    role: str
    joined_at: datetime
    last_read_seq: int


class RosterMemberOut(MemberOut, kw_only=True):
    """A member as listed in a conversation's detail, with who they are."""

    username: str
    display_name: str


class ConversationOut(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    title: str | None
    public: bool
    created_by: str
    created_at: datetime
    last_activity_at: datetime
    last_seq: int
    member_count: int
    members: list[RosterMemberOut]


class InboxItemOut(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    title: str | None
    public: bool
    role: str
    member_count: int
    last_activity_at: datetime
    last_seq: int
    last_read_seq: int
    unread_count: int
    last_message: MessageOut | None


class InboxPage(msgspec.Struct, kw_only=True):
    items: list[InboxItemOut]
    next_cursor: str | None


class PublicConversationOut(msgspec.Struct, kw_only=True):
    id: str
    title: str | None
    member_count: int
    created_at: datetime
    last_activity_at: datetime


class PublicPage(msgspec.Struct, kw_only=True):
    items: list[PublicConversationOut]
    next_cursor: str | None


class PresenceOut(msgspec.Struct, kw_only=True):
    conversation_id: str
    online: list[str]  # user ids of members with a live socket anywhere


class FieldErrorOut(msgspec.Struct, kw_only=True):
    field: str
    message: str


ProblemType = Annotated[str, msgspec.Meta(pattern="^urn:convocore:problem:[a-z-]+$")]


class ProblemOut(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details, the body of every error response (application/problem+json).
    `field` and `errors` are present only when the error concerns named inputs."""

    type: ProblemType
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    detail: str
    field: str | msgspec.UnsetType = msgspec.UNSET
    errors: list[FieldErrorOut] | msgspec.UnsetType = msgspec.UNSET


class ReadOut(msgspec.Struct, kw_only=True):
    conversation_id: str
    user_id: str
    last_read_seq: int
    last_seq: int
    unread_count: int


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, display_name=user.display_name, created_at=user.created_at)


def tokens_out(issued: IssuedTokens) -> TokensOut:
    return TokensOut(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        user=user_out(issued.user),
    )


def message_out(m: Message) -> MessageOut:
    return MessageOut(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender_id=m.sender_id,
        body=m.body,
        client_id=m.client_id,
        reply_to=m.reply_to,
        created_at=m.created_at,
        edited_at=m.edited_at,
        deleted=m.deleted,
    )


def member_out(member: Member) -> MemberOut:
    return MemberOut(
        conversation_id=member.conversation_id,
        user_id=member.user_id,
        role=member.role.value,
        joined_at=member.joined_at,
        last_read_seq=member.last_read_seq,
    )


def roster_member_out(member: Member, user: User | None) -> RosterMemberOut:
    return RosterMemberOut(
        conversation_id=member.conversation_id,
        user_id=member.user_id,
        role=member.role.value,
        joined_at=member.joined_at,
        last_read_seq=member.last_read_seq,
        username=user.username if user else "",
        display_name=user.display_name if user else "",
    )


def conversation_out(detail: ConversationDetail) -> ConversationOut:
    c = detail.conversation
    return ConversationOut(
        id=c.id,
        kind=c.kind.value,
        title=c.title,
        public=c.public,
        created_by=c.created_by,
        created_at=c.created_at,
        last_activity_at=c.last_activity_at,
        last_seq=c.last_seq,
        member_count=c.member_count,
        members=[roster_member_out(m, detail.users.get(m.user_id)) for m in detail.members],
    )


def inbox_item_out(entry: InboxEntry) -> InboxItemOut:
    c, m = entry.conversation, entry.member
    return InboxItemOut(
        id=c.id,
        kind=c.kind.value,
        title=c.title,
        public=c.public,
        role=m.role.value,
        member_count=c.member_count,
        last_activity_at=c.last_activity_at,
        last_seq=c.last_seq,
        last_read_seq=m.last_read_seq,
        unread_count=max(c.last_seq - m.last_read_seq, 0),
        last_message=message_out(entry.last_message) if entry.last_message else None,
    )


def public_out(c: Conversation) -> PublicConversationOut:
    return PublicConversationOut(
        id=c.id,
        title=c.title,
        member_count=c.member_count,
        created_at=c.created_at,
        last_activity_at=c.last_activity_at,
    )


# Cursors are opaque to clients: base64url of a small JSON array.
def encode_cursor(*parts: str | datetime) -> str:
    raw = msgspec.json.encode([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw, type=list[str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise Invalid("not a cursor this server issued", field="cursor") from None
    if len(parts) != size:
        raise Invalid("not a cursor this server issued", field="cursor")
    return parts


def decode_inbox_cursor(cursor: str | None) -> InboxCursor | None:
    if cursor is None:
        return None
    at, conversation_id = _decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise Invalid("not a cursor this server issued", field="cursor") from None
    if moment.tzinfo is None:
        raise Invalid("not a cursor this server issued", field="cursor")
    return InboxCursor(last_activity_at=moment, conversation_id=conversation_id)


def decode_title_cursor(cursor: str | None) -> TitleCursor | None:
    if cursor is None:
        return None
    title, conversation_id = _decode_cursor(cursor, 2)
    return TitleCursor(title=title, conversation_id=conversation_id)


def decode_user_cursor(cursor: str | None) -> str | None:
    return None if cursor is None else _decode_cursor(cursor, 1)[0]
