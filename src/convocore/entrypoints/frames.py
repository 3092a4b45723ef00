"""WebSocket frames: client and server frames as msgspec tagged unions, encoded once per event."""

from typing import Annotated

import msgspec

from convocore.domain import events as ev
from convocore.entrypoints import schemas as s


class ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    pass


class MessageSend(ClientFrame, tag="message.send"):
    body: s.Body
    client_id: s.ClientId | None = None
    reply_to: Annotated[int, msgspec.Meta(ge=1)] | None = None
    conversation_id: s.Id | None = None


class Ping(ClientFrame, tag="ping"):
    pass


client_decoder = msgspec.json.Decoder(MessageSend | Ping)


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


class PongFrame(ServerFrame, tag="pong"):
    pass


_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()


def event_frame(event: ev.Event) -> ServerFrame:
    match event:
        case ev.MessageCreated(message=m):
            return MessageCreatedFrame(conversation_id=m.conversation_id, message=s.message_out(m))
        case ev.MessageUpdated(message=m):
            return MessageUpdatedFrame(conversation_id=m.conversation_id, message=s.message_out(m))
        case ev.MessageDeleted(message=m):
            return MessageDeletedFrame(conversation_id=m.conversation_id, message=s.message_out(m))
        case ev.MemberJoined(conversation_id=cid, member=member, user=user):
            profile = s.user_out(user) if user is not None else None
            return MemberJoinedFrame(conversation_id=cid, member=s.member_out(member), user=profile)
        case ev.MemberLeft(conversation_id=cid, user_id=uid, removed_by=by):
            return MemberLeftFrame(conversation_id=cid, user_id=uid, removed_by=by)
        case ev.MemberRoleChanged(conversation_id=cid, member=member):
            return MemberRoleChangedFrame(conversation_id=cid, member=s.member_out(member))
        case ev.ConversationUpdated(conversation=c):
            return ConversationUpdatedFrame(conversation_id=c.id, title=c.title, public=c.public)
        case ev.ReadMarkerMoved(conversation_id=cid, user_id=uid, seq=seq):
            return ReadFrame(conversation_id=cid, user_id=uid, seq=seq)
    raise TypeError(f"no frame for {event!r}")  # pragma: no cover - the match is exhaustive
