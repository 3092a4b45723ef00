"""The WebSocket API's wire types: client and server frames as msgspec tagged unions.

Standalone, as ``wire.schemas``. Every frame is a JSON text frame, an object tagged by ``type``.
"""

from typing import Literal

import msgspec

from convocore.wire import schemas as s


class ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    pass


class MessageSend(ClientFrame, tag="message.send"):
    body: s.Body
    client_id: s.ClientId | None = None
    reply_to: s.ReplyTo | None = None
    conversation_id: s.Id | None = None


class Ping(ClientFrame, tag="ping"):
    pass


class Typing(ClientFrame, tag="typing"):
    conversation_id: s.Id | None = None


class Resume(ClientFrame, tag="resume"):
    since: dict[s.Id, s.Seq]


client_decoder = msgspec.json.Decoder(MessageSend | Ping | Typing | Resume)


class ServerFrame(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=False):
    pass


class MessageCreatedFrame(ServerFrame, tag="message.created"):
    conversation_id: str
    message: s.MessageOut


class MessageUpdatedFrame(ServerFrame, tag="message.updated"):
    conversation_id: str
    message: s.MessageOut


class MessageDeletedFrame(ServerFrame, tag="message.deleted"):
    conversation_id: str
    message: s.MessageOut


class MemberJoinedFrame(ServerFrame, tag="member.joined"):
    conversation_id: str
    member: s.MemberOut
    user: s.UserOut | None


class MemberLeftFrame(ServerFrame, tag="member.left"):
    conversation_id: str
    user_id: str
    removed_by: str


class MemberRoleChangedFrame(ServerFrame, tag="member.role_changed"):
    conversation_id: str
    member: s.MemberOut


class ConversationUpdatedFrame(ServerFrame, tag="conversation.updated"):
    conversation_id: str
    title: str | None
    public: bool


class ReadFrame(ServerFrame, tag="read"):
    conversation_id: str
    user_id: str
    seq: int


class TypingFrame(ServerFrame, tag="typing"):
    conversation_id: str
    user_id: str


class PresenceFrame(ServerFrame, tag="presence"):
    user_id: str
    status: Literal["online", "offline"]


class ResyncFrame(ServerFrame, tag="resync"):
    conversation_id: str
    last_seq: int


class AckFrame(ServerFrame, tag="ack"):
    client_id: str | None
    id: str
    seq: int
    conversation_id: str


class ErrorFrame(ServerFrame, tag="error"):
    code: str
    detail: str
    field: str | None = None
    client_id: str | None = None
    retry_after: int | None = None  # seconds, for rate-limited and unavailable


class PongFrame(ServerFrame, tag="pong"):
    pass


_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()
