"""Use cases for conversations and membership."""

from collections.abc import Sequence
from dataclasses import dataclass

from convocore.application.ports import (
    Clock,
    IdGenerator,
    InboxCursor,
    InboxEntry,
    Publisher,
    TitleCursor,
    UnitOfWork,
    UnitOfWorkFactory,
)
from convocore.domain.conversations import (
    MAX_GROUP_MEMBERS,
    Conversation,
    Kind,
    Member,
    Role,
    direct_key,
    require_member,
)
from convocore.domain.errors import Conflict, Invalid, NotFound
from convocore.domain.events import (
    ConversationUpdated,
    Event,
    MemberJoined,
    MemberLeft,
    MemberRoleChanged,
    ReadMarkerMoved,
)
from convocore.domain.text import storable
from convocore.domain.users import User


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationDetail:
    conversation: Conversation
    members: list[Member]
    users: dict[str, User]


async def _detail(uow: UnitOfWork, conversation: Conversation) -> ConversationDetail:
    members = await uow.members.list(conversation.id)
    users = await uow.users.get_many([m.user_id for m in members])
    return ConversationDetail(conversation=conversation, members=members, users=users)


async def load_for_member(
    uow: UnitOfWork, *, conversation_id: str, user_id: str, for_update: bool = False
) -> tuple[Conversation, Member]:
    """The conversation and the caller's membership; a non-member gets NotFound.

    With ``for_update`` the conversation row is locked before the member is read, so every
    writer of member rows (posts move read markers, role changes) is serialised by that lock.
    """
    conversation, member = await uow.conversations.get_with_member(conversation_id, user_id, for_update=for_update)
    if conversation is None:
        raise NotFound("no such conversation")
    return conversation, require_member(member)


PAGE_MAX = 200


def check_limit(limit: int) -> None:
    if not 1 <= limit <= PAGE_MAX:
        raise Invalid(f"1 to {PAGE_MAX}", field="limit")


async def _publish(broadcaster: Publisher, events: Sequence[Event]) -> None:
    for event in events:
        await broadcaster.publish(event)


class StartConversation:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher, ids: IdGenerator, clock: Clock) -> None:
        self._uow, self._broadcaster, self._ids, self._clock = uow, broadcaster, ids, clock

    async def execute(
        self,
        *,
        user_id: str,
        kind: Kind,
        members: Sequence[str],
        title: str | None = None,
        public: bool = False,
    ) -> tuple[ConversationDetail, bool]:
        """Returns the conversation and whether it was created (a direct pair's is reused)."""
        others = list(dict.fromkeys(m for m in members if m != user_id))
        if kind is Kind.DIRECT:
            if len(members) != 1 or not others:
                raise Invalid("a direct conversation names exactly one other user", field="members")
            if title is not None or public:
                raise Invalid(
                    "direct conversations have no title and are never public",
                    field="title" if title is not None else "public",
                )
            try:
                detail, created = await self._start_direct(user_id=user_id, other=others[0])
            except Conflict:  # a concurrent request created the pair's conversation first
                async with self._uow() as uow:
                    existing = await uow.conversations.get_direct(direct_key(user_id, others[0]))
                    if existing is None:
                        raise
                    return await _detail(uow, existing), False
        else:
            if len(others) >= MAX_GROUP_MEMBERS:
                raise Invalid(f"a group holds at most {MAX_GROUP_MEMBERS} members", field="members")
            detail, created = await self._start_group(user_id=user_id, others=others, title=title, public=public), True
        if created:  # only now, outside the unit of work: nothing uncommitted is broadcast
            cid = detail.conversation.id
            joined = [
                MemberJoined(conversation_id=cid, member=m, user=detail.users.get(m.user_id)) for m in detail.members
            ]
            await _publish(self._broadcaster, joined)
        return detail, created

    async def _start_direct(self, *, user_id: str, other: str) -> tuple[ConversationDetail, bool]:
        now = self._clock.now()
        async with self._uow() as uow:
            existing = await uow.conversations.get_direct(direct_key(user_id, other))
            if existing is not None:
                return await _detail(uow, existing), False
            if await uow.users.get(other) is None:
                raise Invalid("no user with that id", field="members")
            conversation = Conversation.start_direct(id=self._ids.new_id(), creator=user_id, other=other, now=now)
            roster = [(user_id, Role.MEMBER), (other, Role.MEMBER)]
            return await self._create(uow, conversation, roster), True

    async def _start_group(
        self, *, user_id: str, others: list[str], title: str | None, public: bool
    ) -> ConversationDetail:
        now = self._clock.now()
        conversation = Conversation.start_group(
            id=self._ids.new_id(), creator=user_id, title=title, public=public, now=now
        )
        async with self._uow() as uow:
            known = await uow.users.get_many(others)
            missing = [m for m in others if m not in known]
            if missing:
                raise Invalid(f"no user with id {missing[0]}", field="members")
            roster = [(user_id, Role.OWNER)] + [(m, Role.MEMBER) for m in others]
            return await self._create(uow, conversation, roster)

    async def _create(
        self, uow: UnitOfWork, conversation: Conversation, roster: list[tuple[str, Role]]
    ) -> ConversationDetail:
        now = conversation.created_at
        members = [conversation.admit(user_id=uid, role=role, now=now) for uid, role in roster]
        await uow.conversations.add(conversation)
        for member in members:
            await uow.members.add(member)
        detail = await _detail(uow, conversation)
        await uow.commit()
        return detail


class ListInbox:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(
        self, *, user_id: str, before: InboxCursor | None, limit: int
    ) -> tuple[list[InboxEntry], InboxCursor | None]:
        check_limit(limit)
        async with self._uow() as uow:
            found = await uow.conversations.inbox(user_id=user_id, before=before, limit=limit + 1)
        page = found[:limit]
        return page, (page[-1].cursor if len(found) > limit else None)


class GetConversation:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, *, user_id: str, conversation_id: str) -> ConversationDetail:
        async with self._uow() as uow:
            conversation, _ = await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
            return await _detail(uow, conversation)


class UpdateConversation:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher) -> None:
        self._uow, self._broadcaster = uow, broadcaster

    async def execute(
        self, *, user_id: str, conversation_id: str, title: str | None = None, public: bool | None = None
    ) -> ConversationDetail:
        async with self._uow() as uow:
            conversation, actor = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            conversation.authorize_update(actor=actor)
            before = (conversation.title, conversation.public)
            if title is not None:
                conversation.rename(actor=actor, title=title)
            if public is not None:
                conversation.set_public(actor=actor, public=public)
            detail = await _detail(uow, conversation)
            if (conversation.title, conversation.public) == before:
                return detail
            await uow.conversations.save(conversation)
            await uow.commit()
        await self._broadcaster.publish(ConversationUpdated(conversation=conversation))
        return detail


class AddMember:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher, clock: Clock) -> None:
        self._uow, self._broadcaster, self._clock = uow, broadcaster, clock

    async def execute(
        self, *, user_id: str, conversation_id: str, new_user_id: str, role: Role = Role.MEMBER
    ) -> tuple[Member, bool]:
        """Returns the membership and whether it is new (adding a member twice changes nothing)."""
        async with self._uow() as uow:
            conversation, actor = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            conversation.authorize_add(actor=actor, role=role)
            existing = await uow.members.get(conversation_id, new_user_id)
            if existing is not None:
                return existing, False
            user = await uow.users.get(new_user_id)
            if user is None:
                raise Invalid("no user with that id", field="user_id")
            member = conversation.add(actor=actor, user_id=new_user_id, role=role, now=self._clock.now())
            await uow.members.add(member)
            await uow.conversations.save(conversation)
            await uow.commit()
        await self._broadcaster.publish(MemberJoined(conversation_id=conversation_id, member=member, user=user))
        return member, True


class JoinConversation:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher, clock: Clock) -> None:
        self._uow, self._broadcaster, self._clock = uow, broadcaster, clock

    async def execute(self, *, user_id: str, conversation_id: str) -> tuple[Member, bool]:
        async with self._uow() as uow:
            conversation = await uow.conversations.get(conversation_id, for_update=True)
            if conversation is None:
                raise NotFound("no such conversation")
            existing = await uow.members.get(conversation_id, user_id)
            if existing is not None:
                return existing, False
            member = conversation.join(user_id=user_id, now=self._clock.now())
            user = await uow.users.get(user_id)
            await uow.members.add(member)
            await uow.conversations.save(conversation)
            await uow.commit()
        await self._broadcaster.publish(MemberJoined(conversation_id=conversation_id, member=member, user=user))
        return member, True


class RemoveMember:
    """An owner or admin removes someone, or a member leaves. An owner who leaves hands the
    group to the longest-serving admin, or failing that the longest-serving member."""

    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher) -> None:
        self._uow, self._broadcaster = uow, broadcaster

    async def execute(self, *, user_id: str, conversation_id: str, target_user_id: str) -> None:
        async with self._uow() as uow:
            conversation, actor = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            target = actor if target_user_id == user_id else await uow.members.get(conversation_id, target_user_id)
            if target is None:
                raise NotFound("that user is not a member")
            rest = [m for m in await uow.members.list(conversation_id) if m.user_id != target.user_id]
            successor = next((m for m in rest if m.role is Role.ADMIN), rest[0] if rest else None)
            promoted = conversation.remove(actor=actor, target=target, successor=successor)
            await uow.members.remove(conversation_id, target.user_id)
            if promoted is not None:
                await uow.members.save(promoted)
            await uow.conversations.save(conversation)
            await uow.commit()
        events: list[Event] = [MemberLeft(conversation_id=conversation_id, user_id=target.user_id, removed_by=user_id)]
        if promoted is not None:
            events.append(MemberRoleChanged(conversation_id=conversation_id, member=promoted))
        await _publish(self._broadcaster, events)


class ChangeRole:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher) -> None:
        self._uow, self._broadcaster = uow, broadcaster

    async def execute(self, *, user_id: str, conversation_id: str, target_user_id: str, role: Role) -> Member:
        async with self._uow() as uow:
            conversation, actor = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            target = actor if target_user_id == user_id else await uow.members.get(conversation_id, target_user_id)
            if target is None:
                raise NotFound("that user is not a member")
            previous = target.role
            demoted = conversation.change_role(actor=actor, target=target, role=role)
            if target.role is previous:
                return target  # nothing changed: nothing to store or announce
            await uow.members.save(target)
            if demoted is not None:
                await uow.members.save(demoted)
            await uow.commit()
        changed = [target] + ([demoted] if demoted is not None else [])
        await _publish(
            self._broadcaster, [MemberRoleChanged(conversation_id=conversation_id, member=m) for m in changed]
        )
        return target


class DiscoverPublic:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(
        self, *, query: str, after: TitleCursor | None, limit: int
    ) -> tuple[list[Conversation], TitleCursor | None]:
        check_limit(limit)
        if len(query) > 200:
            raise Invalid("at most 200 characters", field="q")
        storable(query, field="q")
        async with self._uow() as uow:
            found = await uow.conversations.public(query=query, after=after, limit=limit + 1)
        page = found[:limit]
        last = page[-1] if len(found) > limit else None
        cursor = TitleCursor(title=last.title or "", conversation_id=last.id) if last else None
        return page, cursor


class MarkRead:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher) -> None:
        self._uow, self._broadcaster = uow, broadcaster

    async def execute(self, *, user_id: str, conversation_id: str, seq: int) -> tuple[Member, int]:
        """Returns the membership and the conversation's last seq."""
        async with self._uow() as uow:
            conversation, member = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            before = member.last_read_seq
            member.mark_read(seq=seq, last_seq=conversation.last_seq)
            if member.last_read_seq == before:
                return member, conversation.last_seq
            await uow.members.save(member)
            await uow.commit()
        await self._broadcaster.publish(
            ReadMarkerMoved(conversation_id=conversation_id, user_id=user_id, seq=member.last_read_seq)
        )
        return member, conversation.last_seq
