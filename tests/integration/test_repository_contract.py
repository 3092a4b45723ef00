"""The repository contract: one set of tests run against memory, SQLite and PostgreSQL storage."""

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from convocore.adapters.memory import MemoryUnitOfWorkFactory
from convocore.adapters.sql.migrate import create_schema, drop_schema
from convocore.adapters.sql.storage import open_storage
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.messages import PostMessage
from convocore.application.ports import InboxCursor, TitleCursor, UnitOfWorkFactory
from convocore.domain.conversations import Conversation, Member, Role
from convocore.domain.errors import Conflict, Unavailable
from convocore.domain.events import Event
from convocore.domain.messages import Message
from convocore.domain.users import AuthSession, User

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- backends -------------------------------------------------------------------------------


async def _admin(postgres_url: str, *statements: str) -> None:
    """Run the first statement the server accepts."""
    connection = await asyncpg.connect(make_url(postgres_url).set(drivername="postgresql").render_as_string(False))
    try:
        for statement in statements:
            try:
                await connection.execute(statement)
                return
            except asyncpg.PostgresError:
                if statement == statements[-1]:
                    raise
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def contract_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own, so dropping tables never disturbs anyone else using the server.

    It sorts text by an English collation where the server has ICU, as production databases
    often do: the keyset cursors must still page exactly as the memory adapter does.
    """
    name = f"convocore_contract_{uuid.uuid4().hex[:10]}"
    english = f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    asyncio.run(_admin(postgres_url, english, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage under test: "memory", or the URL of a SQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("contract_postgres_url"))
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
    return "memory"


@pytest.fixture
async def new_uow(backend: str) -> AsyncIterator[UnitOfWorkFactory]:
    if backend == "memory":
        yield MemoryUnitOfWorkFactory()
        return
    storage = open_storage(backend)
    await drop_schema(storage)  # every test starts from empty tables
    await create_schema(storage)
    try:
        yield storage
    finally:
        await drop_schema(storage)
        await storage.dispose()


# --- entities -------------------------------------------------------------------------------


def user(name: str, *, created_at: datetime = T0) -> User:
    return User(
        id=f"u-{name.lower()}", username=name, display_name=name.title(), password_hash="hash", created_at=created_at
    )


ALICE, BOB, CAROL = user("alice"), user("Bob"), user("carol")


def group(conversation_id: str, *, title: str = "team", public: bool = False, now: datetime = T0) -> Conversation:
    return Conversation.start_group(id=conversation_id, creator=ALICE.id, title=title, public=public, now=now)


def member(conversation_id: str, person: User, *, joined_at: datetime = T0, last_read_seq: int = 0) -> Member:
    return Member(
        conversation_id=conversation_id,
        user_id=person.id,
        role=Role.MEMBER,
        joined_at=joined_at,
        last_read_seq=last_read_seq,
    )


def message(conversation_id: str, seq: int, *, sender: User = ALICE, client_id: str | None = None) -> Message:
    return Message(
        id=f"m-{conversation_id}-{seq}",
        conversation_id=conversation_id,
        seq=seq,
        sender_id=sender.id,
        body=f"message {seq}",
        client_id=client_id,
        reply_to=None,
        created_at=at(seq),
    )


def auth_session(session_id: str, *, access: str, refresh: str) -> AuthSession:
    return AuthSession(
        id=session_id,
        user_id=ALICE.id,
        access_hash=access,
        access_expires_at=at(60),
        refresh_hash=refresh,
        refresh_expires_at=at(600),
        created_at=T0,
    )


async def store(new_uow: UnitOfWorkFactory, *entities: object) -> None:
    """Add and commit the entities, in the order given (users before what refers to them)."""
    async with new_uow() as uow:
        for entity in entities:
            match entity:
                case User():
                    await uow.users.add(entity)
                case AuthSession():
                    await uow.sessions.add(entity)
                case Conversation():
                    await uow.conversations.add(entity)
                case Member():
                    await uow.members.add(entity)
                case Message():
                    await uow.messages.add(entity)
                case _:
                    raise TypeError(entity)
        await uow.commit()


async def with_history(new_uow: UnitOfWorkFactory, conversation_id: str, count: int) -> None:
    conversation = group(conversation_id)
    for _ in range(count):
        conversation.record_activity(now=T0)
    await store(new_uow, ALICE, conversation, *(message(conversation_id, seq) for seq in range(1, count + 1)))


# --- users ----------------------------------------------------------------------------------


async def test_users_are_found_by_id_and_by_username_in_any_case(new_uow: UnitOfWorkFactory) -> None:
    await store(new_uow, ALICE, BOB)
    async with new_uow() as uow:
        assert await uow.users.get(BOB.id) == BOB
        assert await uow.users.get_by_username("bOB") == BOB
        assert await uow.users.get("u-nobody") is None
        assert await uow.users.get_by_username("nobody") is None
        many = await uow.users.get_many([BOB.id, "u-nobody", ALICE.id])
    assert list(many.items()) == [(BOB.id, BOB), (ALICE.id, ALICE)]


async def test_a_username_taken_in_another_case_is_a_conflict(new_uow: UnitOfWorkFactory) -> None:
    await store(new_uow, ALICE)
    twin = User(id="u-twin", username="ALICE", display_name="A", password_hash="h", created_at=T0)
    async with new_uow() as uow:
        with pytest.raises(Conflict) as raised:
            await uow.users.add(twin)
    assert raised.value.field == "username"
    async with new_uow() as uow:
        assert await uow.users.get(twin.id) is None
        assert await uow.users.get_by_username("alice") == ALICE


async def test_user_search_matches_a_prefix_in_key_order_and_pages_by_cursor(new_uow: UnitOfWorkFactory) -> None:
    await store(new_uow, *(user(name) for name in ("alice", "Alan", "al_x", "alx", "bob", "xal")))
    async with new_uow() as uow:
        first = await uow.users.search(prefix="AL", after=None, limit=2)
        second = await uow.users.search(prefix="al", after=first[-1].username_key, limit=2)
        third = await uow.users.search(prefix="al", after=second[-1].username_key, limit=2)
        underscore = await uow.users.search(prefix="al_", after=None, limit=10)  # "_" is no wildcard
        percent = await uow.users.search(prefix="%", after=None, limit=10)
        cursor_before_prefix = await uow.users.search(prefix="b", after="a", limit=10)
    assert [u.username for u in first] == ["al_x", "Alan"]
    assert [u.username for u in second] == ["alice", "alx"]
    assert third == []
    assert [u.username for u in underscore] == ["al_x"]
    assert percent == []
    assert [u.username for u in cursor_before_prefix] == ["bob"]


# --- sessions -------------------------------------------------------------------------------


async def test_sessions_are_found_by_id_and_by_either_hash(new_uow: UnitOfWorkFactory) -> None:
    session = auth_session("s1", access="a1", refresh="r1")
    await store(new_uow, ALICE, session, auth_session("s2", access="a2", refresh="r2"))
    async with new_uow() as uow:
        assert await uow.sessions.get("s1") == session
        assert await uow.sessions.get_by_access_hash("a1") == session
        assert await uow.sessions.get_by_refresh_hash("r1") == session
        assert await uow.sessions.get_by_access_hash("r1") is None
        assert await uow.sessions.get("s3") is None


async def test_a_saved_rotation_moves_the_lookups_to_the_new_hashes(new_uow: UnitOfWorkFactory) -> None:
    session = auth_session("s1", access="a1", refresh="r1")
    await store(new_uow, ALICE, session)
    session.rotate(access_hash="a9", refresh_hash="r9", access_ttl_s=60, refresh_ttl_s=600, now=at(1))
    session.revoke(now=at(2))
    async with new_uow() as uow:
        await uow.sessions.save(session)
        await uow.commit()
    async with new_uow() as uow:
        assert await uow.sessions.get_by_access_hash("a1") is None
        assert await uow.sessions.get_by_refresh_hash("r1") is None
        assert await uow.sessions.get_by_access_hash("a9") == session
        assert await uow.sessions.get_by_refresh_hash("r9") == session
        stored = await uow.sessions.get("s1")
    assert stored is not None
    assert (stored.revoked_at, stored.access_expires_at) == (at(2), at(2))


# --- conversations --------------------------------------------------------------------------


async def test_conversations_are_stored_found_and_saved(new_uow: UnitOfWorkFactory) -> None:
    team = group("c1", title="Team", public=True)
    direct = Conversation.start_direct(id="d1", creator=ALICE.id, other=BOB.id, now=T0)
    await store(new_uow, ALICE, BOB, team, direct)
    async with new_uow() as uow:
        assert await uow.conversations.get("c1") == team
        assert await uow.conversations.get("c1", for_update=True) == team
        assert await uow.conversations.get_direct(direct.direct_key or "") == direct
        assert await uow.conversations.get_direct("u-x:u-y") is None
        assert await uow.conversations.get("nope") is None
        team.rename(actor=Member(conversation_id="c1", user_id=ALICE.id, role=Role.OWNER, joined_at=T0), title="New")
        team.record_activity(now=at(5))
        await uow.conversations.save(team)
        await uow.commit()
    async with new_uow() as uow:
        stored = await uow.conversations.get("c1")
    assert stored == team
    assert stored is not None
    assert (stored.title, stored.last_seq, stored.last_activity_at) == ("New", 1, at(5))


async def test_a_second_direct_conversation_for_a_pair_is_a_conflict(new_uow: UnitOfWorkFactory) -> None:
    await store(new_uow, ALICE, BOB, Conversation.start_direct(id="d1", creator=ALICE.id, other=BOB.id, now=T0))
    again = Conversation.start_direct(id="d2", creator=BOB.id, other=ALICE.id, now=T0)
    async with new_uow() as uow:
        with pytest.raises(Conflict) as raised:
            await uow.conversations.add(again)
    assert raised.value.field == "members"
    async with new_uow() as uow:
        assert await uow.conversations.get("d2") is None


async def test_the_inbox_is_most_recent_first_with_a_keyset_cursor(new_uow: UnitOfWorkFactory) -> None:
    c1, c2, c3, c4, c5 = (group(f"c{i}", now=at(t)) for i, t in ((1, 0), (2, 1), (3, 2), (4, 2), (5, 3)))
    c1.record_activity(now=at(4))
    c1.record_activity(now=at(5))
    await store(
        new_uow,
        ALICE,
        BOB,
        c1,
        c2,
        c3,
        c4,
        c5,
        member("c1", ALICE, last_read_seq=1),
        *(member(c, ALICE) for c in ("c2", "c3", "c4")),
        member("c5", BOB),
        message("c1", 1),
        message("c1", 2, sender=BOB),
    )
    async with new_uow() as uow:
        first = await uow.conversations.inbox(user_id=ALICE.id, before=None, limit=2)
        second = await uow.conversations.inbox(user_id=ALICE.id, before=first[-1].cursor, limit=2)
        rest = await uow.conversations.inbox(user_id=ALICE.id, before=second[-1].cursor, limit=2)
        bobs = await uow.conversations.inbox(user_id=BOB.id, before=None, limit=10)
        nobodys = await uow.conversations.inbox(user_id=CAROL.id, before=None, limit=10)
    # c3 and c4 share a moment: the id breaks the tie, on both sides of the cursor.
    assert [e.conversation.id for e in first + second] == ["c1", "c4", "c3", "c2"]
    assert rest == []
    assert first[0].conversation == c1
    assert first[0].last_message == message("c1", 2, sender=BOB)
    assert first[0].member == member("c1", ALICE, last_read_seq=1)
    assert first[1].last_message is None
    assert first[1].cursor == InboxCursor(last_activity_at=at(2), conversation_id="c4")
    assert [e.conversation.id for e in bobs] == ["c5"]
    assert nobodys == []


async def test_public_groups_are_found_by_title_in_any_case_with_a_cursor(new_uow: UnitOfWorkFactory) -> None:
    found = [
        group("p-2", title="Python", public=True),
        group("p-1", title="Python", public=True),
        group("p-3", title="python fans", public=True),
        group("p-4", title="py_thon", public=True),
        group("p-5", title="Rust", public=True),
        group("p-6", title="Python secrets"),
        Conversation.start_direct(id="d1", creator=ALICE.id, other=BOB.id, now=T0),
    ]
    await store(new_uow, ALICE, BOB, *found)
    async with new_uow() as uow:
        first = await uow.conversations.public(query="PY", after=None, limit=2)
        cursor = TitleCursor(title="Python", conversation_id="p-2")
        second = await uow.conversations.public(query="PY", after=cursor, limit=10)
        underscore = await uow.conversations.public(query="_", after=None, limit=10)
        percent = await uow.conversations.public(query="%", after=None, limit=10)
        inner = await uow.conversations.public(query="ON F", after=None, limit=10)
        everything = await uow.conversations.public(query="", after=None, limit=10)
    assert [c.id for c in first] == ["p-1", "p-2"]  # equal titles: by id
    assert [c.id for c in second] == ["p-4", "p-3"]  # bytewise: "P" < "p" and "_" < "t"
    assert [c.id for c in underscore] == ["p-4"]
    assert percent == []
    assert [c.id for c in inner] == ["p-3"]
    assert [c.id for c in everything] == ["p-1", "p-2", "p-5", "p-4", "p-3"]
    assert first[0] == found[1]


# --- members --------------------------------------------------------------------------------


async def test_members_are_listed_in_joining_order_saved_and_removed(new_uow: UnitOfWorkFactory) -> None:
    later, earlier = member("c1", BOB, joined_at=at(1)), member("c1", CAROL, joined_at=at(0))
    same_time = member("c1", ALICE, joined_at=at(1))
    await store(new_uow, ALICE, BOB, CAROL, group("c1"), later, earlier, same_time)
    async with new_uow() as uow:
        assert await uow.members.list("c1") == [earlier, same_time, later]  # ties by user id
        assert await uow.members.get("c1", BOB.id) == later
        assert await uow.members.get("c1", "u-nobody") is None
        assert await uow.members.list("c2") == []
        later.role, later.last_read_seq = Role.ADMIN, 7
        await uow.members.save(later)
        await uow.members.remove("c1", CAROL.id)
        await uow.members.remove("c1", "u-nobody")  # nothing to remove is fine
        await uow.commit()
    async with new_uow() as uow:
        assert await uow.members.get("c1", BOB.id) == later
        assert await uow.members.get("c1", CAROL.id) is None
        assert await uow.members.list("c1") == [same_time, later]
        assert await uow.conversations.inbox(user_id=CAROL.id, before=None, limit=10) == []


@pytest.mark.parametrize("for_update", [False, True])
async def test_a_conversation_is_read_with_one_member_and_both_save_as_read(
    new_uow: UnitOfWorkFactory, for_update: bool
) -> None:
    conversation, bob = group("c1", title="Read together"), member("c1", BOB, last_read_seq=3)
    conversation.record_activity(now=at(5))
    await store(new_uow, ALICE, BOB, CAROL, conversation, group("c2"), member("c1", ALICE), bob, member("c2", CAROL))
    async with new_uow() as uow:
        assert await uow.conversations.get_with_member("c1", BOB.id, for_update=for_update) == (conversation, bob)
        assert await uow.conversations.get_with_member("c1", CAROL.id, for_update=for_update) == (conversation, None)
        assert await uow.conversations.get_with_member("c9", BOB.id, for_update=for_update) == (None, None)
        # What was read is what a save compares with: change one column of each, save both.
        found, reader = await uow.conversations.get_with_member("c1", BOB.id, for_update=for_update)
        assert found is not None and reader is not None
        found.record_activity(now=at(6))
        reader.last_read_seq = found.last_seq
        await uow.conversations.save(found)
        await uow.members.save(reader)
        await uow.commit()
    async with new_uow() as uow:
        assert await uow.conversations.get_with_member("c1", BOB.id) == (found, reader)
        assert await uow.members.get("c1", ALICE.id) == member("c1", ALICE)
        assert await uow.conversations.get("c2") == group("c2")


async def test_a_locked_read_waits_and_sees_the_members_the_holder_committed(new_uow: UnitOfWorkFactory) -> None:
    """A read ``for_update`` that has to wait for the conversation's lock answers with the
    members as they are once it holds it: one removed meanwhile is gone, one added is there, one
    whose role changed has the new role (what a post or a membership change decides by)."""
    conversation = group("c1")
    await store(new_uow, ALICE, BOB, CAROL, conversation, member("c1", ALICE), member("c1", BOB))
    async with new_uow() as holder:
        found = await holder.conversations.get("c1", for_update=True)
        assert found is not None
        await holder.members.remove("c1", BOB.id)
        await holder.members.add(member("c1", CAROL))
        await holder.members.save(dataclasses.replace(member("c1", ALICE), role=Role.ADMIN))

        async def read(person: User) -> Member | None:
            async with new_uow() as uow:
                _, seen = await uow.conversations.get_with_member("c1", person.id, for_update=True)
                return seen

        readers = [asyncio.create_task(read(person)) for person in (ALICE, BOB, CAROL)]
        await asyncio.sleep(0.3)  # each has sent its read (PostgreSQL) or waits for its turn (SQLite)
        assert not any(r.done() for r in readers) or isinstance(new_uow, MemoryUnitOfWorkFactory)
        await holder.commit()
    alice, bob, carol = await asyncio.gather(*readers)
    assert alice is not None and alice.role is Role.ADMIN
    assert bob is None
    assert carol == member("c1", CAROL)


async def test_adding_a_member_twice_is_a_conflict(new_uow: UnitOfWorkFactory) -> None:
    await store(new_uow, ALICE, group("c1"), member("c1", ALICE))
    async with new_uow() as uow:
        with pytest.raises(Conflict) as raised:
            await uow.members.add(member("c1", ALICE, joined_at=at(9)))
    assert raised.value.field == "user_id"
    async with new_uow() as uow:
        assert await uow.members.list("c1") == [member("c1", ALICE)]


# --- messages -------------------------------------------------------------------------------


async def test_messages_are_found_by_seq_and_by_client_id_and_saved(new_uow: UnitOfWorkFactory) -> None:
    first, second = message("c1", 1, client_id="k1"), message("c1", 2, sender=BOB)
    await store(new_uow, ALICE, BOB, group("c1"), group("c2"), first, second)
    async with new_uow() as uow:
        assert await uow.messages.get("c1", 1) == first
        assert await uow.messages.get("c1", 2) == second
        assert await uow.messages.get("c1", 3) is None
        assert await uow.messages.get("c2", 1) is None
        assert await uow.messages.get_by_client_id("c1", ALICE.id, "k1") == first
        assert await uow.messages.get_by_client_id("c1", BOB.id, "k1") is None
        assert await uow.messages.get_by_client_id("c2", ALICE.id, "k1") is None
        first.body, first.edited_at = "edited", at(30)
        second.deleted, second.body = True, ""
        await uow.messages.save(first)
        await uow.messages.save(second)
        await uow.commit()
    async with new_uow() as uow:
        assert await uow.messages.get("c1", 1) == first
        assert await uow.messages.get("c1", 2) == second


async def test_a_client_id_used_before_stores_nothing_and_the_transaction_goes_on(new_uow: UnitOfWorkFactory) -> None:
    first = message("c1", 1, client_id="k1")
    await store(new_uow, ALICE, BOB, group("c1"), first)
    async with new_uow() as uow:
        retried = message("c1", 2, client_id="k1")
        retried.body = "a retry"
        assert await uow.messages.add(retried) is False
        assert await uow.messages.get("c1", 2) is None
        assert await uow.messages.get_by_client_id("c1", ALICE.id, "k1") == first
        # The refused insert did not end the transaction (PostgreSQL aborts one on an error).
        assert await uow.messages.add(message("c1", 2, client_id="k2")) is True
        assert await uow.messages.add(message("c1", 3, sender=BOB, client_id="k1")) is True
        await uow.commit()
    async with new_uow() as uow:
        page = await uow.messages.page("c1", before=None, after=None, limit=10)
    assert [(m.seq, m.client_id, m.body) for m in page] == [
        (1, "k1", "message 1"),
        (2, "k2", "message 2"),
        (3, "k1", "message 3"),
    ]


async def test_a_seq_used_twice_is_a_conflict(new_uow: UnitOfWorkFactory) -> None:
    await with_history(new_uow, "c1", 1)
    async with new_uow() as uow:
        with pytest.raises(Conflict) as raised:
            await uow.messages.add(message("c1", 1))
    assert raised.value.field == "seq"


@pytest.mark.parametrize(
    ("before", "after", "limit", "seqs"),
    [
        (None, None, 3, [8, 9, 10]),  # the newest end
        (None, None, 50, list(range(1, 11))),
        (5, None, 3, [2, 3, 4]),  # just below `before`
        (3, None, 10, [1, 2]),
        (100, None, 2, [9, 10]),
        (None, 5, 3, [6, 7, 8]),  # just above `after`
        (None, 0, 2, [1, 2]),
        (None, 8, 10, [9, 10]),
        (9, 2, 10, [3, 4, 5, 6, 7, 8]),  # both: the oldest end of the range
        (9, 2, 2, [3, 4]),
        (1, None, 5, []),
        (None, 10, 5, []),
        (6, 5, 5, []),
        (3, 7, 5, []),
    ],
)
async def test_a_history_page_is_ascending_and_sits_at_the_right_end(
    new_uow: UnitOfWorkFactory, before: int | None, after: int | None, limit: int, seqs: list[int]
) -> None:
    await with_history(new_uow, "c1", 10)
    async with new_uow() as uow:
        page = await uow.messages.page("c1", before=before, after=after, limit=limit)
    assert [m.seq for m in page] == seqs
    assert page == [message("c1", seq) for seq in seqs]


async def test_an_empty_history_has_empty_pages(new_uow: UnitOfWorkFactory) -> None:
    await with_history(new_uow, "c1", 0)
    async with new_uow() as uow:
        assert await uow.messages.page("c1", before=None, after=None, limit=10) == []
        assert await uow.messages.page("c1", before=None, after=0, limit=10) == []
        assert await uow.messages.page("unknown", before=5, after=None, limit=10) == []


# --- transactions ---------------------------------------------------------------------------


async def test_leaving_the_block_without_commit_leaves_nothing_behind(new_uow: UnitOfWorkFactory) -> None:
    async with new_uow() as uow:
        await uow.users.add(ALICE)
        await uow.sessions.add(auth_session("s1", access="a1", refresh="r1"))
        await uow.conversations.add(group("c1", title="Lost", public=True))
        await uow.members.add(member("c1", ALICE))
        await uow.messages.add(message("c1", 1, client_id="k1"))
    async with new_uow() as uow:
        assert await uow.users.get(ALICE.id) is None
        assert await uow.users.get_by_username("alice") is None
        assert await uow.users.search(prefix="a", after=None, limit=10) == []
        assert await uow.sessions.get_by_access_hash("a1") is None
        assert await uow.conversations.get("c1") is None
        assert await uow.conversations.public(query="", after=None, limit=10) == []
        assert await uow.conversations.inbox(user_id=ALICE.id, before=None, limit=10) == []
        assert await uow.members.list("c1") == []
        assert await uow.messages.get_by_client_id("c1", ALICE.id, "k1") is None
        assert await uow.messages.page("c1", before=None, after=None, limit=10) == []
    await store(new_uow, ALICE)  # nothing was left holding the name


async def test_updates_and_removals_are_rolled_back_too(new_uow: UnitOfWorkFactory) -> None:
    session, conversation, alice, bob = (
        auth_session("s1", access="a1", refresh="r1"),
        group("c1"),
        member("c1", ALICE),
        member("c1", BOB),
    )
    await store(new_uow, ALICE, BOB, session, conversation, alice, bob)

    async def change_everything_then_fail() -> None:
        async with new_uow() as uow:
            changed = group("c1", title="Changed")
            changed.record_activity(now=at(9))
            await uow.conversations.save(changed)
            await uow.messages.add(message("c1", 1))
            await uow.members.save(member("c1", ALICE, last_read_seq=1))
            await uow.members.remove("c1", BOB.id)
            await uow.sessions.save(auth_session("s1", access="a2", refresh="r2"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await change_everything_then_fail()
    async with new_uow() as uow:
        assert await uow.conversations.get("c1") == conversation
        assert await uow.messages.get("c1", 1) is None
        assert await uow.members.list("c1") == [alice, bob]
        assert await uow.sessions.get_by_access_hash("a1") == session
        assert await uow.sessions.get_by_access_hash("a2") is None


async def test_commit_is_visible_to_the_next_unit_of_work_and_later_writes_are_not(
    new_uow: UnitOfWorkFactory,
) -> None:
    async with new_uow() as uow:
        await uow.users.add(ALICE)
        await uow.commit()
        await uow.users.add(BOB)  # after the commit, and never committed itself
    async with new_uow() as uow:
        assert await uow.users.get(ALICE.id) == ALICE
        assert await uow.users.get(BOB.id) is None


async def test_aware_datetimes_round_trip_as_the_same_instant(new_uow: UnitOfWorkFactory) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    born = datetime(2024, 5, 1, 17, 30, 15, 123456, tzinfo=india)
    # c-late is later in UTC though earlier on its own wall clock.
    early, late = (
        group("c-early", now=datetime(2024, 5, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))),
        group("c-late", now=datetime(2024, 5, 1, 7, 0, tzinfo=timezone(timedelta(hours=-6)))),
    )
    await store(new_uow, user("alice", created_at=born), early, late, member("c-early", ALICE), member("c-late", ALICE))
    async with new_uow() as uow:
        stored = await uow.users.get(ALICE.id)
        inbox = await uow.conversations.inbox(user_id=ALICE.id, before=None, limit=10)
        cursor = InboxCursor(last_activity_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), conversation_id="z")
        older = await uow.conversations.inbox(user_id=ALICE.id, before=cursor, limit=10)
    assert stored is not None
    assert stored.created_at == born
    assert stored.created_at.utcoffset() is not None
    assert [e.conversation.id for e in inbox] == ["c-late", "c-early"]
    assert [e.conversation.id for e in older] == ["c-early"]
    assert all(e.conversation.created_at.tzinfo is not None for e in inbox)


# --- concurrency ----------------------------------------------------------------------------


class CollectingBroadcaster:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)


async def test_concurrent_posts_get_every_seq_exactly_once(new_uow: UnitOfWorkFactory) -> None:
    conversation = group("c1")
    roster = [conversation.admit(user_id=person.id, role=Role.MEMBER, now=T0) for person in (ALICE, BOB, CAROL)]
    await store(new_uow, ALICE, BOB, CAROL, conversation, *roster)
    broadcaster = CollectingBroadcaster()
    post = PostMessage(uow=new_uow, broadcaster=broadcaster, ids=UuidGenerator(), clock=SystemClock())

    posted = await asyncio.gather(
        *(
            post.execute(user_id=roster[i % 3].user_id, conversation_id="c1", body=f"hello {i}", client_id=f"k{i}")
            for i in range(20)
        )
    )

    assert sorted(p.message.seq for p in posted) == list(range(1, 21))
    assert all(p.created for p in posted)
    async with new_uow() as uow:
        stored = await uow.conversations.get("c1")
        history = await uow.messages.page("c1", before=None, after=None, limit=100)
    assert stored is not None
    assert stored.last_seq == 20
    assert [m.seq for m in history] == list(range(1, 21))
    assert sorted(m.body for m in history) == sorted(f"hello {i}" for i in range(20))
    assert len(broadcaster.events) == 20


# --- the SQL adapter's own duties -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["sqlite:///{tmp}/plain.db", "sqlite+aiosqlite:///{tmp}/async.db", "sqlite+pysqlite:///{tmp}/py.db"]
)
async def test_every_sqlite_url_form_works_and_the_schema_can_be_created_twice(url: str, tmp_path: Path) -> None:
    storage = open_storage(url.format(tmp=tmp_path))
    try:
        await create_schema(storage)
        await create_schema(storage)
        await store(storage, ALICE)
        async with storage() as uow:
            assert await uow.users.get(ALICE.id) == ALICE
    finally:
        await storage.dispose()
    assert open_storage("postgresql://u@localhost/db").dialect_name == "postgresql"


async def test_an_in_memory_sqlite_database_outlives_each_unit_of_work() -> None:
    storage = open_storage("sqlite+aiosqlite://")
    try:
        await create_schema(storage)
        await store(storage, ALICE)
        async with storage() as uow:
            assert await uow.users.get(ALICE.id) == ALICE
    finally:
        await storage.dispose()


async def test_an_unreachable_database_is_unavailable() -> None:
    storage = open_storage("postgresql://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(Unavailable) as raised:
            async with storage():
                pass
    finally:
        await storage.dispose()
    assert raised.value.retry_after == 1


async def test_a_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    storage = open_storage(f"sqlite:///{path}", sqlite_busy_timeout_ms=100)
    try:
        await create_schema(storage)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            with pytest.raises(Unavailable):
                async with storage() as uow:
                    await uow.users.add(ALICE)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        async with storage() as uow:  # and once it is free, works
            await uow.users.add(ALICE)
            await uow.commit()
    finally:
        await storage.dispose()
