"""The HTTP API's wire types: request and response bodies as msgspec Structs.

Standalone (msgspec and the standard library only), so that clients, ``convocore.client``
among them, can import them without loading the server. The limits are the domain's
(``tests/unit/test_wire_limits.py`` holds them equal).
"""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

BODY_MAX = 4000
CLIENT_ID_MAX = 64
TITLE_MAX = 200
DISPLAY_NAME_MAX = 64
PASSWORD_MIN, PASSWORD_MAX = 8, 128
USERNAME_PATTERN = "[A-Za-z0-9_.-]{3,32}"
SEQ_MAX = 2**63 - 1  # seqs are 64-bit
ID_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"  # ids hold no control characters

Body = Annotated[str, msgspec.Meta(min_length=1, max_length=BODY_MAX)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
ReplyTo = Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)]


class In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies: unknown fields are an error, not silently dropped."""


Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=f"^{USERNAME_PATTERN}$")]
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
    reply_to: ReplyTo | None = None


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
