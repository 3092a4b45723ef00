"""Every use case wired from the production in-memory adapters, as the unit tests use them."""

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster, MemoryUnitOfWorkFactory
from convocore.adapters.system import SecretTokenGenerator, UuidGenerator
from convocore.application.accounts import (
    Authenticate,
    GetUser,
    LogIn,
    LogOut,
    PrincipalCache,
    RefreshTokens,
    RegisterUser,
    SearchUsers,
    TokenPolicy,
)
from convocore.application.conversations import (
    AddMember,
    ChangeRole,
    DiscoverPublic,
    GetConversation,
    JoinConversation,
    ListInbox,
    MarkRead,
    RemoveMember,
    StartConversation,
    UpdateConversation,
)
from convocore.application.messages import DeleteMessage, EditMessage, ListMessages, PostMessage
from convocore.application.ports import Clock
from convocore.domain.conversations import Conversation, Kind, Member, Role
from convocore.domain.events import Event
from convocore.domain.messages import Message
from convocore.domain.users import User

PASSWORD = "correct horse battery"
E = TypeVar("E")


class FrozenClock:
    """Stands still until a test moves it: for token expiry and the order of activity."""

    def __init__(self) -> None:
        self._now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, *, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class Chat:
    """The core as the embedded mode runs it; ``events`` is what the broadcaster delivered."""

    def __init__(self, *, clock: Clock, policy: TokenPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or TokenPolicy()
        self.uow = MemoryUnitOfWorkFactory()
        self.broadcaster = InProcessBroadcaster()
        self.events: list[Event] = []
        self.broadcaster.add_listener(self.events.append)
        hasher = Argon2PasswordHasher(time_cost=1, memory_cost=1024)
        ids, tokens = UuidGenerator(), SecretTokenGenerator()
        uow, bus = self.uow, self.broadcaster

        self.register = RegisterUser(uow=uow, hasher=hasher, ids=ids, clock=clock)
        self.log_in = LogIn(uow=uow, hasher=hasher, ids=ids, tokens=tokens, clock=clock, policy=self.policy)
        # As served: accepted tokens are remembered for a while, on this clock.
        self.principals = PrincipalCache(ttl_s=5, monotonic=lambda: clock.now().timestamp())
        self.refresh = RefreshTokens(uow=uow, tokens=tokens, clock=clock, policy=self.policy, cache=self.principals)
        self.authenticate = Authenticate(uow=uow, tokens=tokens, clock=clock, cache=self.principals)
        self.log_out = LogOut(uow=uow, clock=clock, broadcaster=bus, cache=self.principals)
        self.get_user = GetUser(uow=uow)
        self.search_users = SearchUsers(uow=uow)

        self.start = StartConversation(uow=uow, broadcaster=bus, ids=ids, clock=clock)
        self.inbox = ListInbox(uow=uow)
        self.get_conversation = GetConversation(uow=uow)
        self.update = UpdateConversation(uow=uow, broadcaster=bus)
        self.add_member = AddMember(uow=uow, broadcaster=bus, clock=clock)
        self.join = JoinConversation(uow=uow, broadcaster=bus, clock=clock)
        self.remove_member = RemoveMember(uow=uow, broadcaster=bus)
        self.change_role = ChangeRole(uow=uow, broadcaster=bus)
        self.discover = DiscoverPublic(uow=uow)
        self.mark_read = MarkRead(uow=uow, broadcaster=bus)

        self.post = PostMessage(uow=uow, broadcaster=bus, ids=ids, clock=clock)
        self.list_messages = ListMessages(uow=uow)
        self.edit = EditMessage(uow=uow, broadcaster=bus, clock=clock)
        self.delete = DeleteMessage(uow=uow, broadcaster=bus, clock=clock)

    # Arrange helpers: each goes through the real use case.

    async def sign_up(self, username: str) -> User:
        return await self.register.execute(username=username, password=PASSWORD)

    async def people(self, *usernames: str) -> list[User]:
        return [await self.sign_up(name) for name in usernames]

    async def group(self, owner: User, *members: User, title: str = "team", public: bool = False) -> str:
        detail, _ = await self.start.execute(
            user_id=owner.id, kind=Kind.GROUP, members=[m.id for m in members], title=title, public=public
        )
        return detail.conversation.id

    async def direct(self, a: User, b: User) -> str:
        detail, _ = await self.start.execute(user_id=a.id, kind=Kind.DIRECT, members=[b.id])
        return detail.conversation.id

    async def team(self) -> tuple[str, User, User, User, User]:
        """A private group: ann owns it, bob is an admin, cat a plain member; dan is an outsider."""
        ann, bob, cat, dan = await self.people("ann", "bob", "cat", "dan")
        conversation_id = await self.group(ann, bob, cat, title="team")
        await self.set_role(ann, conversation_id, bob, Role.ADMIN)
        self.events.clear()
        return conversation_id, ann, bob, cat, dan

    async def set_role(self, owner: User, conversation_id: str, target: User, role: Role) -> Member:
        return await self.change_role.execute(
            user_id=owner.id, conversation_id=conversation_id, target_user_id=target.id, role=role
        )

    async def say(self, sender: User, conversation_id: str, body: str = "hello") -> Message:
        posted = await self.post.execute(user_id=sender.id, conversation_id=conversation_id, body=body)
        return posted.message

    async def history(self, conversation_id: str, sender: User, count: int) -> None:
        """``count`` messages from ``sender``, bodies m1, m2...; the events they caused are forgotten."""
        for i in range(1, count + 1):
            await self.say(sender, conversation_id, f"m{i}")
        self.events.clear()

    # Assert helpers: read the committed state through a fresh unit of work.

    async def stored_member(self, conversation_id: str, user_id: str) -> Member | None:
        async with self.uow() as uow:
            return await uow.members.get(conversation_id, user_id)

    async def stored_conversation(self, conversation_id: str) -> Conversation | None:
        async with self.uow() as uow:
            return await uow.conversations.get(conversation_id)

    async def stored_message(self, conversation_id: str, seq: int) -> Message | None:
        async with self.uow() as uow:
            return await uow.messages.get(conversation_id, seq)

    async def member_count(self, conversation_id: str) -> int:
        conversation = await self.stored_conversation(conversation_id)
        assert conversation is not None
        return conversation.member_count

    async def roles(self, conversation_id: str) -> dict[str, str]:
        async with self.uow() as uow:
            return {m.user_id: m.role.value for m in await uow.members.list(conversation_id)}

    def events_of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]
