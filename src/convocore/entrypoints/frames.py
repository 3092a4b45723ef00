"""WebSocket frames: client and server frames as msgspec tagged unions, encoded once per event."""

from typing import Annotated, Literal

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


class Typing(ClientFrame, tag="typing"):
    conversation_id: s.Id | None = None


class Resume(ClientFrame, tag="resume"):
    since: dict[s.Id, Annotated[int, msgspec.Meta(ge=0)]]


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
        case ev.UserTyping(conversation_id=cid, user_id=uid):
            return TypingFrame(conversation_id=cid, user_id=uid)
        case ev.PresenceChanged(user_id=uid, online=online):
            return PresenceFrame(user_id=uid, status="online" if online else "offline")
    raise TypeError(f"no frame for {event!r}")


class Route(msgspec.Struct, array_like=True, kw_only=True):
    """What the hub needs to know to deliver an event without decoding its frame."""

    kind: str
    conversation_id: str | None = None
    seq: int = 0  # message.created: the message's seq
    user_id: str | None = None  # the member joining/leaving, the person typing, present, or logged out
    session_id: str | None = None
    conversation_ids: tuple[str, ...] = ()  # presence: every conversation of that person
    start_seq: int = 0  # member.joined: the seq the new member's stream starts after


def route_of(event: ev.Event) -> Route:
    match event:
        case ev.MessageCreated(message=m):
            return Route(kind="message.created", conversation_id=m.conversation_id, seq=m.seq)
        case ev.MessageUpdated(message=m) | ev.MessageDeleted(message=m):
            kind = "message.updated" if isinstance(event, ev.MessageUpdated) else "message.deleted"
            return Route(kind=kind, conversation_id=m.conversation_id, seq=m.seq)
        case ev.MemberJoined(conversation_id=cid, member=member):
            return Route(
                kind="member.joined", conversation_id=cid, user_id=member.user_id, start_seq=member.last_read_seq
            )
        case ev.MemberLeft(conversation_id=cid, user_id=uid):
            return Route(kind="member.left", conversation_id=cid, user_id=uid)
        case ev.PresenceChanged(user_id=uid, conversation_ids=cids):
            return Route(kind="presence", user_id=uid, conversation_ids=cids)
        case ev.SessionRevoked(user_id=uid, session_id=sid):
            return Route(kind="session.revoked", user_id=uid, session_id=sid)
        case ev.UserTyping(conversation_id=cid, user_id=uid):
            return Route(kind="typing", conversation_id=cid, user_id=uid)
        case _:
            return Route(kind="event", conversation_id=event.conversation_id)


_KINDS: dict[type[ev.Event], str] = {
    ev.MessageCreated: "message.created",
    ev.MessageUpdated: "message.updated",
    ev.MessageDeleted: "message.deleted",
    ev.MemberJoined: "member.joined",
    ev.MemberLeft: "member.left",
    ev.PresenceChanged: "presence",
    ev.SessionRevoked: "session.revoked",
    ev.UserTyping: "typing",
}


def kind_of(event: ev.Event) -> str:
    """``route_of(event).kind`` without building the route (counted for every event published)."""
    return _KINDS.get(type(event)) or route_of(event).kind


def frame_text(event: ev.Event) -> str:
    """The frame sockets get for ``event``; empty for events only the server acts on."""
    return "" if isinstance(event, ev.SessionRevoked) else encode(event_frame(event))


_route_encoder = msgspec.json.Encoder()
_route_decoder = msgspec.json.Decoder(Route)


def wire_encode(event: ev.Event) -> bytes:
    """One encoding per event for Redis: the route, a newline, then the frame itself."""
    return _route_encoder.encode(route_of(event)) + b"\n" + frame_text(event).encode()


def wire_decode(data: bytes) -> tuple[Route, str]:
    head, _, frame = data.partition(b"\n")
    return _route_decoder.decode(head), frame.decode()
