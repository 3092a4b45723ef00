"""convocore.client against a real server: the REST calls, live events, and the socket
surviving a killed transport, a network outage long enough to need a resync, token expiry
and logout."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from convocore.client import ApiError, ConvocoreClient, SessionEnded, frames
from tests.support.relay import Outage
from tests.support.server import ServerProcess

PASSWORD = "correct horse"
CHEAP_HASHING = {"CONVOCORE_ARGON2_TIME_COST": "1", "CONVOCORE_ARGON2_MEMORY_COST": "1024"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        env={"CONVOCORE_RESYNC_LIMIT": "20", **CHEAP_HASHING}, cwd=tmp_path_factory.mktemp("client")
    ).start()
    yield process
    process.stop()


async def signed_in(base_url: str, name: str) -> ConvocoreClient:
    client = ConvocoreClient(base_url, backoff_max_s=0.5)
    username = f"{name}_{uuid.uuid4().hex[:8]}"
    await client.register(username, PASSWORD, display_name=name.title())
    await client.login(username, PASSWORD)
    return client


@pytest.fixture
async def pair(server: ServerProcess) -> AsyncIterator[tuple[ConvocoreClient, ConvocoreClient]]:
    alice, bob = await signed_in(server.base_url, "alice"), await signed_in(server.base_url, "bob")
    yield alice, bob
    await alice.aclose()
    await bob.aclose()


async def seqs_until(client: ConvocoreClient, conversation_id: str, last: int, timeout: float = 20) -> list[int]:
    """The seqs of the conversation's message.created frames, until ``last`` arrives."""
    seen: list[int] = []
    async with asyncio.timeout(timeout):
        async for event in client.events():
            if isinstance(event, frames.MessageCreatedFrame) and event.conversation_id == conversation_id:
                seen.append(event.message.seq)
                if event.message.seq >= last:
                    return seen
    return seen


async def test_the_rest_api_through_the_client(pair: tuple[ConvocoreClient, ConvocoreClient]) -> None:
    alice, bob = pair
    assert (await alice.me()).id == alice.user.id
    found = await alice.search_users(bob.user.username[:6])
    assert bob.user.id in [u.id for u in found.items]
    direct = await alice.start_direct(bob.user.id)
    assert (direct.kind, sorted(m.user_id for m in direct.members)) == ("direct", sorted([alice.user.id, bob.user.id]))
    group = await alice.start_group("Launch", members=[bob.user.id])
    first = await alice.send(group.id, "hello", client_id="c-1")
    again = await alice.send(group.id, "hello", client_id="c-1")  # a retry returns the stored message
    await bob.send(group.id, "hi alice")
    assert (first.seq, again.id) == (1, first.id)
    edited = await alice.edit(group.id, 1, "hello, bob")
    assert edited.edited_at is not None
    tombstone = await bob.delete(group.id, 2)
    assert (tombstone.deleted, tombstone.body) == (True, "")
    page = await bob.history(group.id)
    assert [(m.seq, m.body, m.deleted) for m in page.items] == [(1, "hello, bob", False), (2, "", True)]
    older = await bob.history(group.id, before=2, limit=1)
    assert ([m.seq for m in older.items], older.has_more) == ([1], False)
    inbox = await alice.inbox()  # sending moves your own read marker: bob's reply is alice's one unread
    assert {item.id: item.unread_count for item in inbox.items} == {group.id: 1, direct.id: 0}
    assert (await alice.mark_read(group.id, 2)).unread_count == 0
    with pytest.raises(ApiError) as refused:
        await bob.edit(group.id, 1, "not mine")
    assert (refused.value.status, refused.value.kind) == (403, "forbidden")


async def test_live_events_come_in_order_with_new_conversations(pair: tuple[ConvocoreClient, ConvocoreClient]) -> None:
    alice, bob = pair
    group = await alice.start_group("Live", members=[bob.user.id])
    await bob.connect()
    for i in range(3):
        await alice.send(group.id, f"m{i}")
    await alice.edit(group.id, 2, "m1, edited")
    later = await alice.start_group("Later", members=[bob.user.id])  # started after bob connected
    await alice.send(later.id, "in the new one")
    await alice.typing(group.id)  # alice has no socket yet: dropped, not an error
    seen: list[tuple[str, str, str]] = []
    async with asyncio.timeout(10):
        async for event in bob.events():
            if isinstance(event, frames.MessageCreatedFrame | frames.MessageUpdatedFrame):
                seen.append((type(event).__name__, event.conversation_id, event.message.body))
            elif isinstance(event, frames.MemberJoinedFrame) and event.member.user_id == bob.user.id:
                seen.append(("joined", event.conversation_id, ""))
            if len(seen) == 6:
                break
    assert seen == [
        ("MessageCreatedFrame", group.id, "m0"),
        ("MessageCreatedFrame", group.id, "m1"),
        ("MessageCreatedFrame", group.id, "m2"),
        ("MessageUpdatedFrame", group.id, "m1, edited"),
        ("joined", later.id, ""),
        ("MessageCreatedFrame", later.id, "in the new one"),
    ]


async def test_a_killed_socket_reconnects_and_resumes_with_nothing_lost_or_repeated(
    pair: tuple[ConvocoreClient, ConvocoreClient],
) -> None:
    alice, bob = pair
    group = await alice.start_group("Stream", members=[bob.user.id])
    await bob.connect()
    total = 150

    async def stream() -> None:
        for i in range(total):
            await alice.send(group.id, f"m{i}")

    sender = asyncio.create_task(stream())
    seen: list[int] = []
    async with asyncio.timeout(30):
        async for event in bob.events():
            if isinstance(event, frames.MessageCreatedFrame):
                seen.append(event.message.seq)
                if len(seen) == 20:
                    assert bob.live.socket is not None
                    bob.live.socket.transport.abort()  # the network drops: no close handshake
                if seen[-1] == total:
                    break
    await sender
    assert seen == list(range(1, total + 1))
    assert bob.live.connections >= 2


async def test_an_outage_longer_than_the_replay_limit_is_filled_over_rest(server: ServerProcess) -> None:
    outage = Outage(server.port)
    await outage.up()
    alice = await signed_in(server.base_url, "alice")
    bob = await signed_in(outage.base_url, "bob")  # bob's REST calls and socket go through the relay
    try:
        group = await alice.start_group("Outage", members=[bob.user.id])
        await bob.connect()
        await alice.send(group.id, "before")
        assert await seqs_until(bob, group.id, 1) == [1]
        await outage.down()
        for i in range(30):  # more than the server replays (CONVOCORE_RESYNC_LIMIT=20): a resync
            await alice.send(group.id, f"while away {i}")
        await asyncio.sleep(0.3)  # bob's client is retrying against a closed port meanwhile
        await outage.up()
        await alice.send(group.id, "after")
        assert await seqs_until(bob, group.id, 32) == list(range(2, 33))
    finally:
        await alice.aclose()
        await bob.aclose()
        await outage.down()


async def test_an_expired_access_token_is_refreshed_and_the_socket_resumes(tmp_path: Path) -> None:
    short = ServerProcess(env={"CONVOCORE_ACCESS_TTL_S": "1", **CHEAP_HASHING}, cwd=tmp_path).start()
    try:
        alice, bob = await signed_in(short.base_url, "alice"), await signed_in(short.base_url, "bob")
        group = await alice.start_group("Expiry", members=[bob.user.id])
        await bob.connect()
        first_token = bob.access_token
        total = 20
        for i in range(total):  # 2 s: the tokens expire on the way; alice's REST calls refresh too
            await alice.send(group.id, f"m{i}")
            await asyncio.sleep(0.1)
        assert await seqs_until(bob, group.id, total) == list(range(1, total + 1))
        assert bob.access_token != first_token
        assert bob.live.connections >= 2  # closed with 4401 at expiry, then reconnected
        assert (await alice.me()).id == alice.user.id
    finally:
        await alice.aclose()
        await bob.aclose()
        short.stop()


async def test_logging_out_ends_the_event_stream(pair: tuple[ConvocoreClient, ConvocoreClient]) -> None:
    _, bob = pair
    await bob.connect()
    await bob.logout()
    with pytest.raises(SessionEnded):
        async with asyncio.timeout(10):
            async for _ in bob.events():
                pass
