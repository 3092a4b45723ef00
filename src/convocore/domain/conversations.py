"""Conversations and membership: who may do what to a conversation."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from convocore.domain.errors import Conflict, Forbidden, Invalid, NotFound
from convocore.domain.text import storable

TITLE_MAX = 200
# A seq is a 64-bit integer wherever it is stored or sent: 1 .. SEQ_MAX (0: before the first).
SEQ_MAX = 2**63 - 1
MAX_GROUP_MEMBERS = 1000


class Kind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


MANAGERS = frozenset({Role.OWNER, Role.ADMIN})


@dataclass(slots=True, kw_only=True)
class Member:
    conversation_id: str
    user_id: str
    role: Role
    joined_at: datetime
    last_read_seq: int = 0

    @property
    def manages(self) -> bool:
        return self.role in MANAGERS

    def mark_read(self, *, seq: int, last_seq: int) -> None:
        """Move the read marker forward; it never moves backwards nor past the end."""
        if not 0 <= seq <= SEQ_MAX:
            raise Invalid(f"0 to {SEQ_MAX}", field="seq")
        self.last_read_seq = max(self.last_read_seq, min(seq, last_seq))


def direct_key(a: str, b: str) -> str:
    """The one key a pair's direct conversation is unique on, whoever started it."""
    return ":".join(sorted((a, b)))


def validate_title(title: str | None) -> str:
    cleaned = (title or "").strip()
    if not cleaned:
        raise Invalid("a group needs a title", field="title")
    if len(cleaned) > TITLE_MAX:
        raise Invalid(f"at most {TITLE_MAX} characters", field="title")
    return storable(cleaned, field="title")


@dataclass(slots=True, kw_only=True)
class Conversation:
    id: str
    kind: Kind
    title: str | None
    public: bool
    created_by: str
    created_at: datetime
    last_activity_at: datetime
    last_seq: int = 0
    member_count: int = 0
    direct_key: str | None = None

    @classmethod
    def start_direct(cls, *, id: str, creator: str, other: str, now: datetime) -> "Conversation":
        if other == creator:
            raise Invalid("a direct conversation needs one other user", field="members")
        return cls(
            id=id,
            kind=Kind.DIRECT,
            title=None,
            public=False,
            created_by=creator,
            created_at=now,
            last_activity_at=now,
            direct_key=direct_key(creator, other),
        )

    @classmethod
    def start_group(cls, *, id: str, creator: str, title: str | None, public: bool, now: datetime) -> "Conversation":
        return cls(
            id=id,
            kind=Kind.GROUP,
            title=validate_title(title),
            public=public,
            created_by=creator,
            created_at=now,
            last_activity_at=now,
        )

    @property
    def is_direct(self) -> bool:
        return self.kind is Kind.DIRECT

    def admit(self, *, user_id: str, role: Role, now: datetime) -> Member:
        """A new member; they start with everything already sent marked as read."""
        if self.member_count >= MAX_GROUP_MEMBERS:
            raise Conflict(f"a conversation holds at most {MAX_GROUP_MEMBERS} members", field="members")
        self.member_count += 1
        return Member(conversation_id=self.id, user_id=user_id, role=role, joined_at=now, last_read_seq=self.last_seq)

    def authorize_update(self, *, actor: Member) -> None:
        """Changing a conversation's settings, even to the same values, is for its managers."""
        self._require_group("changed")
        self._require_manager(actor)

    def rename(self, *, actor: Member, title: str | None) -> None:
        self._require_group("renamed")
        self._require_manager(actor)
        self.title = validate_title(title)

    def set_public(self, *, actor: Member, public: bool) -> None:
        self._require_group("made public")
        self._require_manager(actor)
        self.public = public

    def authorize_add(self, *, actor: Member, role: Role) -> None:
        self._require_group("given new members")
        self._require_manager(actor)
        if role is Role.OWNER or (role is Role.ADMIN and actor.role is not Role.OWNER):
            raise Forbidden("only the owner appoints admins, and ownership is handed over by a role change")

    def add(self, *, actor: Member, user_id: str, role: Role, now: datetime) -> Member:
        self.authorize_add(actor=actor, role=role)
        return self.admit(user_id=user_id, role=role, now=now)

    def join(self, *, user_id: str, now: datetime) -> Member:
        if self.is_direct or not self.public:
            raise NotFound("no such conversation")
        # Someone must be able to manage a group its last member left: the first to come back.
        role = Role.OWNER if self.member_count == 0 else Role.MEMBER
        return self.admit(user_id=user_id, role=role, now=now)

    def remove(self, *, actor: Member, target: Member, successor: Member | None) -> Member | None:
        """Remove ``target`` (or let ``actor`` leave). Returns a member promoted to owner, if any."""
        self._require_group("left; they keep their two members")
        if actor.user_id != target.user_id:
            self._require_manager(actor)
            if target.role is Role.OWNER or (target.role is Role.ADMIN and actor.role is not Role.OWNER):
                raise Forbidden("admins remove members; only the owner removes admins")
        self.member_count -= 1
        if target.role is Role.OWNER and successor is not None:
            successor.role = Role.OWNER
            return successor
        return None

    def change_role(self, *, actor: Member, target: Member, role: Role) -> Member | None:
        """Set ``target``'s role. Naming a new owner hands ownership over; returns the old owner."""
        self._require_group("given roles")
        if actor.role is not Role.OWNER:
            raise Forbidden("only the owner changes roles")
        if target.user_id == actor.user_id:
            if role is Role.OWNER:
                return None
            raise Forbidden("the owner hands ownership over by making someone else owner")
        target.role = role
        if role is Role.OWNER:
            actor.role = Role.ADMIN
            return actor
        return None

    def record_activity(self, *, now: datetime) -> int:
        """Allocate the next sequence number: 1, 2, 3... per conversation."""
        self.last_seq += 1
        self.last_activity_at = now
        return self.last_seq

    def _require_group(self, what: str) -> None:
        if self.is_direct:
            raise Forbidden(f"direct conversations cannot be {what}")

    @staticmethod
    def _require_manager(actor: Member) -> None:
        if not actor.manages:
            raise Forbidden("only the owner or an admin may do this")


def require_member(member: Member | None) -> Member:
    """Non-members learn nothing about a conversation, not even that it exists."""
    if member is None:
        raise NotFound("no such conversation")
    return member
