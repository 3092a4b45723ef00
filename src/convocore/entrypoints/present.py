"""Domain objects as the wire types say them (``convocore.wire``): response bodies, cursors,
and the frames the real-time engine sends (``SocketFrames``, its ``Frames`` port)."""

import base64
import binascii
from datetime import datetime

import msgspec

from convocore.application.accounts import IssuedTokens
from convocore.application.conversations import ConversationDetail
from convocore.application.ports import InboxCursor, InboxEntry, TitleCursor
from convocore.domain import events as ev
from convocore.domain.conversations import Conversation, Member
from convocore.domain.errors import Invalid
from convocore.domain.messages import Message
from convocore.domain.text import storable
from convocore.domain.users import User
from convocore.wire import frames as f
from convocore.wire.schemas import (
    ConversationOut,
    InboxItemOut,
    MemberOut,
    MessageOut,
    PublicConversationOut,
    RosterMemberOut,
    TokensOut,
    UserOut,
)


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
    for part in parts:
        storable(part, field="cursor")
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


def event_frame(event: ev.Event) -> f.ServerFrame:
    match event:
        case ev.MessageCreated(message=m):
            return f.MessageCreatedFrame(conversation_id=m.conversation_id, message=message_out(m))
        case ev.MessageUpdated(message=m):
            return f.MessageUpdatedFrame(conversation_id=m.conversation_id, message=message_out(m))
        case ev.MessageDeleted(message=m):
            return f.MessageDeletedFrame(conversation_id=m.conversation_id, message=message_out(m))
        case ev.MemberJoined(conversation_id=cid, member=member, user=user):
            profile = user_out(user) if user is not None else None
            return f.MemberJoinedFrame(conversation_id=cid, member=member_out(member), user=profile)
        case ev.MemberLeft(conversation_id=cid, user_id=uid, removed_by=by):
            return f.MemberLeftFrame(conversation_id=cid, user_id=uid, removed_by=by)
        case ev.MemberRoleChanged(conversation_id=cid, member=member):
            return f.MemberRoleChangedFrame(conversation_id=cid, member=member_out(member))
        case ev.ConversationUpdated(conversation=c):
            return f.ConversationUpdatedFrame(conversation_id=c.id, title=c.title, public=c.public)
        case ev.ReadMarkerMoved(conversation_id=cid, user_id=uid, seq=seq):
            return f.ReadFrame(conversation_id=cid, user_id=uid, seq=seq)
        case ev.UserTyping(conversation_id=cid, user_id=uid):
            return f.TypingFrame(conversation_id=cid, user_id=uid)
        case ev.PresenceChanged(user_id=uid, online=online):
            return f.PresenceFrame(user_id=uid, status="online" if online else "offline")
    raise TypeError(f"no frame for {event!r}")


class SocketFrames:
    """The real-time engine's ``Frames``: JSON text frames, one encoding per event."""

    def event(self, event: ev.Event) -> str:
        return "" if isinstance(event, ev.SessionRevoked) else f.encode(event_frame(event))

    def resync(self, conversation_id: str, last_seq: int) -> str:
        return f.encode(f.ResyncFrame(conversation_id=conversation_id, last_seq=last_seq))
