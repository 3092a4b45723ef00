"""The in-memory unit of work: leaving the block without ``commit()`` undoes every kind of write."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from convocore.adapters.memory import MemoryUnitOfWorkFactory
from convocore.domain.conversations import Conversation, Member, Role
from convocore.domain.errors import Conflict
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def a_user(user_id: str = "u1", username: str = "ann") -> User:
    return User(id=user_id, username=username, display_name=username, password_hash="h", created_at=NOW)


def a_session() -> AuthSession:
    return AuthSession(
        id="s1",
        user_id="u1",
        access_hash="a0",
        access_expires_at=NOW + timedelta(hours=1),
        refresh_hash="r0",
        refresh_expires_at=NOW + timedelta(days=1),
        created_at=NOW,
    )


def a_direct() -> Conversation:
    return Conversation.start_direct(id="d1", creator="u1", other="u2", now=NOW)


def a_member(user_id: str = "u1", role: Role = Role.MEMBER) -> Member:
    return Member(conversation_id="d1", user_id=user_id, role=role, joined_at=NOW)


def a_message(seq: int = 1, client_id: str | None = "c-1") -> Message:
    return Message(
        id=f"m{seq}",
        conversation_id="d1",
        seq=seq,
        sender_id="u1",
        body=f"body {seq}",
        client_id=client_id,
        reply_to=None,
        created_at=NOW,
    )


@pytest.fixture
def uow() -> MemoryUnitOfWorkFactory:
    return MemoryUnitOfWorkFactory()


@pytest.fixture
async def with_conversation(uow: MemoryUnitOfWorkFactory) -> MemoryUnitOfWorkFactory:
    """A committed direct conversation d1 between u1 and u2, with u1 as a member."""
    async with uow() as tx:
        await tx.users.add(a_user("u1", "ann"))
        await tx.users.add(a_user("u2", "bob"))
        await tx.conversations.add(a_direct())
        await tx.members.add(a_member("u1"))
        await tx.commit()
    return uow


async def test_a_committed_write_is_kept(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.users.add(a_user())
        await tx.commit()

    async with uow() as tx:
        assert await tx.users.get("u1") == a_user()


async def test_an_uncommitted_user_leaves_no_trace(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.users.add(a_user(username="Ann"))

    async with uow() as tx:
        assert await tx.users.get("u1") is None
        assert await tx.users.get_by_username("ann") is None
        assert await tx.users.get_many(["u1"]) == {}
        assert await tx.users.search(prefix="a", after=None, limit=10) == []
        await tx.users.add(a_user("u9", "ANN"))  # the name is free again
        assert [u.id for u in await tx.users.search(prefix="", after=None, limit=10)] == ["u9"]


async def test_an_exception_inside_the_block_rolls_back_and_propagates(uow: MemoryUnitOfWorkFactory) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with uow() as tx:
            await tx.users.add(a_user())
            raise RuntimeError("boom")

    async with uow() as tx:
        assert await tx.users.get("u1") is None


async def test_writes_after_a_commit_need_a_commit_of_their_own(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.users.add(a_user("u1", "ann"))
        await tx.commit()
        await tx.users.add(a_user("u2", "bob"))

    async with uow() as tx:
        assert set(await tx.users.get_many(["u1", "u2"])) == {"u1"}


async def test_an_uncommitted_session_leaves_no_trace(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.sessions.add(a_session())

    async with uow() as tx:
        assert await tx.sessions.get("s1") is None
        assert await tx.sessions.get_by_access_hash("a0") is None
        assert await tx.sessions.get_by_refresh_hash("r0") is None


async def test_an_uncommitted_rotation_restores_the_old_hashes(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.sessions.add(a_session())
        await tx.commit()

    async with uow() as tx:
        session = await tx.sessions.get("s1")
        assert session is not None
        session.rotate(access_hash="a1", refresh_hash="r1", access_ttl_s=60, refresh_ttl_s=60, now=NOW)
        await tx.sessions.save(session)
        assert await tx.sessions.get_by_refresh_hash("r0") is None  # visible inside the block

    async with uow() as tx:
        assert await tx.sessions.get("s1") == a_session()
        assert await tx.sessions.get_by_access_hash("a0") == a_session()
        assert await tx.sessions.get_by_refresh_hash("r0") == a_session()
        assert await tx.sessions.get_by_access_hash("a1") is None
        assert await tx.sessions.get_by_refresh_hash("r1") is None


async def test_a_committed_rotation_retires_the_old_hashes(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.sessions.add(a_session())
        await tx.commit()

    async with uow() as tx:
        session = await tx.sessions.get("s1")
        assert session is not None
        session.rotate(access_hash="a1", refresh_hash="r1", access_ttl_s=60, refresh_ttl_s=60, now=NOW)
        await tx.sessions.save(session)
        await tx.commit()

    async with uow() as tx:
        assert await tx.sessions.get_by_access_hash("a0") is None
        assert await tx.sessions.get_by_refresh_hash("r0") is None
        rotated = await tx.sessions.get_by_refresh_hash("r1")
        assert rotated is not None
        assert rotated.access_hash == "a1"


async def test_an_uncommitted_revocation_is_undone(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.sessions.add(a_session())
        await tx.commit()

    async with uow() as tx:
        session = await tx.sessions.get("s1")
        assert session is not None
        session.revoke(now=NOW)
        await tx.sessions.save(session)

    async with uow() as tx:
        stored = await tx.sessions.get_by_access_hash("a0")
        assert stored is not None
        assert stored.revoked_at is None


async def test_an_uncommitted_conversation_leaves_no_trace(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.conversations.add(a_direct())
        await tx.members.add(a_member("u1"))
        await tx.messages.add(a_message())

    async with uow() as tx:
        assert await tx.conversations.get("d1") is None
        assert await tx.conversations.get_direct(a_direct().direct_key or "") is None
        assert await tx.members.get("d1", "u1") is None
        assert await tx.conversations.inbox(user_id="u1", before=None, limit=10) == []
        await tx.conversations.add(a_direct())  # the pair is free again
        assert await tx.members.list("d1") == []
        assert await tx.messages.get("d1", 1) is None


async def test_an_uncommitted_conversation_update_is_undone(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation
    async with uow() as tx:
        conversation = await tx.conversations.get("d1", for_update=True)
        assert conversation is not None
        conversation.record_activity(now=NOW + timedelta(hours=1))
        await tx.conversations.save(conversation)

    async with uow() as tx:
        assert await tx.conversations.get("d1") == a_direct()


async def test_an_uncommitted_member_is_removed_again(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation
    async with uow() as tx:
        await tx.members.add(a_member("u2"))

    async with uow() as tx:
        assert await tx.members.get("d1", "u2") is None
        assert [m.user_id for m in await tx.members.list("d1")] == ["u1"]
        assert await tx.conversations.inbox(user_id="u2", before=None, limit=10) == []


async def test_an_uncommitted_removal_brings_the_member_back(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation
    async with uow() as tx:
        await tx.members.remove("d1", "u1")
        assert await tx.members.get("d1", "u1") is None

    async with uow() as tx:
        assert await tx.members.get("d1", "u1") == a_member("u1")
        assert [e.conversation.id for e in await tx.conversations.inbox(user_id="u1", before=None, limit=10)] == ["d1"]


async def test_a_committed_removal_drops_the_conversation_from_the_inbox(
    with_conversation: MemoryUnitOfWorkFactory,
) -> None:
    uow = with_conversation
    async with uow() as tx:
        await tx.members.remove("d1", "u1")
        await tx.commit()

    async with uow() as tx:
        assert await tx.members.get("d1", "u1") is None
        assert await tx.conversations.inbox(user_id="u1", before=None, limit=10) == []


async def test_an_uncommitted_member_change_is_undone(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation
    async with uow() as tx:
        member = await tx.members.get("d1", "u1")
        assert member is not None
        member.role, member.last_read_seq = Role.ADMIN, 7
        await tx.members.save(member)

    async with uow() as tx:
        assert await tx.members.get("d1", "u1") == a_member("u1")


async def test_an_uncommitted_message_and_its_client_id_leave_no_trace(
    with_conversation: MemoryUnitOfWorkFactory,
) -> None:
    uow = with_conversation
    async with uow() as tx:
        await tx.messages.add(a_message(1, client_id="c-1"))
        await tx.messages.add(a_message(2, client_id="c-2"))

    async with uow() as tx:
        assert await tx.messages.get("d1", 1) is None
        assert await tx.messages.get_by_client_id("d1", "u1", "c-1") is None
        assert await tx.messages.get_by_client_id("d1", "u1", "c-2") is None
        assert await tx.messages.page("d1", before=None, after=None, limit=10) == []
        await tx.messages.add(a_message(1, client_id="c-other"))  # seq 1 is free again
        # A forgotten client id would now claim the new seq 1 as the retried message.
        assert await tx.messages.get_by_client_id("d1", "u1", "c-1") is None


async def test_an_uncommitted_message_edit_is_undone(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation
    async with uow() as tx:
        await tx.messages.add(a_message(1))
        await tx.commit()

    async with uow() as tx:
        message = await tx.messages.get("d1", 1)
        assert message is not None
        message.delete(actor=a_member("u1"), now=NOW)
        await tx.messages.save(message)

    async with uow() as tx:
        assert await tx.messages.get("d1", 1) == a_message(1)
        assert await tx.messages.get_by_client_id("d1", "u1", "c-1") == a_message(1)


async def test_a_failed_write_rolls_back_the_writes_before_it(uow: MemoryUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.users.add(a_user("u1", "ann"))
        await tx.commit()

    with pytest.raises(Conflict):
        async with uow() as tx:
            await tx.users.add(a_user("u2", "bob"))
            await tx.users.add(a_user("u3", "ANN"))
            await tx.commit()

    async with uow() as tx:
        assert set(await tx.users.get_many(["u1", "u2", "u3"])) == {"u1"}
        assert await tx.users.get_by_username("bob") is None


async def test_entities_go_in_and_come_out_as_copies(uow: MemoryUnitOfWorkFactory) -> None:
    user = a_user()
    async with uow() as tx:
        await tx.users.add(user)
        await tx.commit()
        user.display_name = "changed after adding"
        fetched = await tx.users.get("u1")
        assert fetched is not None
        fetched.display_name = "changed after getting"

    async with uow() as tx:
        stored = await tx.users.get("u1")
        assert stored is not None
        assert stored.display_name == "ann"


async def test_units_of_work_run_one_at_a_time(with_conversation: MemoryUnitOfWorkFactory) -> None:
    uow = with_conversation

    async def bump() -> None:
        async with uow() as tx:
            conversation = await tx.conversations.get("d1", for_update=True)
            assert conversation is not None
            await asyncio.sleep(0)  # give the other task every chance to interleave
            conversation.record_activity(now=NOW)
            await tx.conversations.save(conversation)
            await tx.commit()

    await asyncio.gather(*(bump() for _ in range(10)))

    async with uow() as tx:
        conversation = await tx.conversations.get("d1")
        assert conversation is not None
        assert conversation.last_seq == 10
