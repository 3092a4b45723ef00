"""Messages: posting, editing and tombstoning, with per-conversation sequence numbers."""

from dataclasses import dataclass
from datetime import datetime

from convocore.domain.conversations import SEQ_MAX, Conversation, Member
from convocore.domain.errors import Conflict, Forbidden, Invalid
from convocore.domain.text import storable

BODY_MAX = 4000
CLIENT_ID_MAX = 64


def validate_body(body: str) -> str:
    if not body.strip():
        raise Invalid("a message needs a body", field="body")
    if len(body) > BODY_MAX:
        raise Invalid(f"at most {BODY_MAX} characters", field="body")
    return storable(body, field="body")


def validate_seq(seq: int, *, field: str = "seq", minimum: int = 1) -> int:
    if not minimum <= seq <= SEQ_MAX:
        raise Invalid(f"{minimum} to {SEQ_MAX}", field=field)
    return seq


def validate_client_id(client_id: str | None) -> str | None:
    if client_id is not None:
        if not 1 <= len(client_id) <= CLIENT_ID_MAX:
            raise Invalid(f"1 to {CLIENT_ID_MAX} characters", field="client_id")
        storable(client_id, field="client_id")
    return client_id


@dataclass(slots=True, kw_only=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    body: str
    client_id: str | None
    reply_to: int | None
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False

    def edit(self, *, actor: Member, body: str, now: datetime) -> None:
        if actor.user_id != self.sender_id:
            raise Forbidden("only the author edits a message")
        if self.deleted:
            raise Conflict("the message was deleted")
        self.body = validate_body(body)
        self.edited_at = now

    def delete(self, *, actor: Member, now: datetime) -> bool:
        """Tombstone: the seq stays, the body goes. Returns False when it was already gone."""
        if actor.user_id != self.sender_id and not actor.manages:
            raise Forbidden("only the author, the owner or an admin deletes a message")
        if self.deleted:
            return False
        self.deleted = True
        self.body = ""
        return True


def post(
    conversation: Conversation,
    *,
    sender: Member,
    message_id: str,
    body: str,
    client_id: str | None,
    reply_to: int | None,
    now: datetime,
) -> Message:
    """Post into ``conversation``: the sender must be a member; their read marker follows."""
    validate_body(body)
    validate_client_id(client_id)
    if reply_to is not None and not 1 <= reply_to <= conversation.last_seq:
        raise Invalid("no message with that seq in this conversation", field="reply_to")
    seq = conversation.record_activity(now=now)
    sender.last_read_seq = seq
    return Message(
        id=message_id,
        conversation_id=conversation.id,
        seq=seq,
        sender_id=sender.user_id,
        body=body,
        client_id=client_id,
        reply_to=reply_to,
        created_at=now,
    )
