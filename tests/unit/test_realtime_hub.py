"""The real-time engine (application/realtime) on the in-memory adapters, with no sockets:
per-conversation order, gaps filled from storage, repeats dropped, resume and resync, joining
and leaving, logout, and slow consumers.

Storage is the memory adapter's; a test that must decide when storage answers holds a unit of
work open (``Storage.hold``), which is what a busy database does to a catch-up."""

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from convocore.adapters.memory import InProcessBroadcaster, MemoryOutlet, MemoryUnitOfWork, MemoryUnitOfWorkFactory
from convocore.application.ports import Ending
from convocore.application.realtime.hub import Hub
from convocore.application.realtime.streams import Stream
from convocore.application.realtime.use_cases import CatchUp
from convocore.domain.conversations import Conversation, Kind, Member, Role
from convocore.domain.events import (
    ConversationUpdated,
    MemberJoined,
    MemberLeft,
    MessageCreated,
    MessageUpdated,
    SessionRevoked,
)
from convocore.domain.messages import Message
from convocore.entrypoints.present import SocketFrames

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2100, 1, 1, tzinfo=UTC)


def _message(seq: int, body: str = "hi") -> Message:
    return Message(
        id=f"m{seq}",
        conversation_id="c",
        seq=seq,
        sender_id="u",
        body=body,
        client_id=None,
        reply_to=None,
        created_at=NOW,
    )


def _conversation(last_seq: int = 0) -> Conversation:
    return Conversation(
        id="c", kind=Kind.GROUP, title="team", public=False, created_by="u", created_at=NOW,
        last_activity_at=NOW, last_seq=last_seq, member_count=1, direct_key=None,
    )  # fmt: skip


class Storage:
    """The memory adapter holding conversation "c"; ``hold()`` keeps every other unit of work
    waiting until ``release()``, and ``store`` writes messages (inside the hold, if any)."""

    def __init__(self) -> None:
        self.uow = MemoryUnitOfWorkFactory()
        self._held: MemoryUnitOfWork | None = None

    async def create(self) -> None:
        async with self.uow() as uow:
            await uow.conversations.add(_conversation())
            await uow.commit()

    async def store(self, *messages: Message) -> None:
        if self._held is not None:
            await self._write(self._held, messages)
            return
        async with self.uow() as uow:
            await self._write(uow, messages)

    @staticmethod
    async def _write(uow: MemoryUnitOfWork, messages: tuple[Message, ...]) -> None:
        conversation = await uow.conversations.get("c")
        assert conversation is not None
        for message in messages:
            await uow.messages.add(message)
            conversation.last_seq = message.seq
        await uow.conversations.save(conversation)
        await uow.commit()

    async def hold(self) -> None:
        self._held = self.uow()
        await self._held.__aenter__()

    async def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.__aexit__(None, None, None)
        await settle()


class Engine:
    """A hub on the memory adapters, and the streams it serves."""

    def __init__(self, storage: Storage, *, resync_limit: int = 500) -> None:
        self.storage = storage
        self.broadcaster = InProcessBroadcaster()
        self.hub = Hub(
            catch_up=CatchUp(uow=storage.uow),
            frames=SocketFrames(),
            feed=self.broadcaster,
            resync_limit=resync_limit,
        )

    async def stream(
        self, user_id: str, *, conversation_id: str | None = None, outlet: MemoryOutlet | None = None, queue: int = 64
    ) -> tuple[Stream, MemoryOutlet]:
        outlet = outlet or MemoryOutlet()
        stream = Stream(
            outlet=outlet,
            user_id=user_id,
            session_id=f"s-{user_id}",
            expires_at=LATER,
            queue_size=queue,
            conversation_id=conversation_id,
        )
        await self.hub.register(stream)
        return stream, outlet

    async def publish(self, *events: object) -> None:
        for event in events:
            await self.broadcaster.publish(event)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def sent(outlet: MemoryOutlet) -> list[tuple[str, int | None]]:
    """(frame type, message seq) of every frame the outlet was sent."""
    frames = [json.loads(frame) for frame in outlet.frames]
    return [(f["type"], f.get("message", {}).get("seq")) for f in frames]


@pytest.fixture
async def storage() -> Storage:
    made = Storage()
    await made.create()
    return made


async def test_events_that_arrive_while_a_subscription_starts_keep_their_order(storage: Storage) -> None:
    engine = Engine(storage)
    stream, outlet = await engine.stream("u")
    await storage.hold()  # the starting point is still being read
    engine.hub.subscribe(stream, "c", after=None)
    await settle()

    await engine.publish(
        MessageCreated(message=_message(2)),  # committed out of order: 2 before 1
        MessageCreated(message=_message(1)),
        MessageUpdated(message=_message(1, "edited")),
        ConversationUpdated(conversation=replace(_conversation(2), title="renamed")),
    )
    assert outlet.frames == []  # all held until the starting point is known

    await storage.release()
    assert sent(outlet) == [
        ("message.created", 1),
        ("message.created", 2),
        ("message.updated", 1),
        ("conversation.updated", None),
    ]


async def test_a_live_gap_is_filled_from_storage_and_a_repeat_is_not_sent_again(storage: Storage) -> None:
    engine = Engine(storage)
    stream, outlet = await engine.stream("u")
    engine.hub.subscribe(stream, "c", after=None)
    await settle()

    await storage.store(_message(1))
    await engine.publish(MessageCreated(message=_message(1)))
    await storage.store(_message(2), _message(3))  # 2 was committed, but its event never reached this process
    await engine.publish(MessageCreated(message=_message(3)))
    await settle()
    assert [seq for _, seq in sent(outlet)] == [1, 2, 3]  # 2 read from storage, before 3

    await engine.publish(MessageCreated(message=_message(3)))  # heard twice (a replay overlapping the stream)
    await storage.store(_message(4))
    await engine.publish(MessageCreated(message=_message(4)))
    await settle()
    assert [seq for _, seq in sent(outlet)] == [1, 2, 3, 4]


async def test_a_new_member_hears_of_joining_before_the_messages_that_follow_it(storage: Storage) -> None:
    """Messages posted straight after a member joined reach their user socket after the joining,
    whether storage replays them (committed before the starting point was read) or they are
    heard live."""
    engine = Engine(storage)
    _, outlet = await engine.stream("u")
    await storage.hold()
    member = Member(conversation_id="c", user_id="u", role=Role.MEMBER, joined_at=NOW)
    await engine.publish(MemberJoined(conversation_id="c", member=member, user=None))
    await storage.store(_message(1), _message(2))  # committed before the starting point is read
    await engine.publish(MessageCreated(message=_message(2)))  # and 2's event heard while it is read
    await storage.release()
    assert sent(outlet) == [("member.joined", None), ("message.created", 1), ("message.created", 2)]

    watcher, watched = await engine.stream("w")  # someone already following the conversation hears it too
    engine.hub.subscribe(watcher, "c", after=None)
    await settle()
    other = Member(conversation_id="c", user_id="v", role=Role.MEMBER, joined_at=NOW)
    await engine.publish(MemberJoined(conversation_id="c", member=other, user=None))
    assert sent(watched) == [("member.joined", None)]
    assert sent(outlet)[-1] == ("member.joined", None)  # and the first member's socket


async def test_a_resumed_stream_keeps_an_event_heard_live_before_the_messages_that_followed_it(
    storage: Storage,
) -> None:
    await storage.store(_message(1))  # stored (and published) before the socket resumed: not heard live
    engine = Engine(storage)
    stream, outlet = await engine.stream("u")
    await storage.hold()
    engine.hub.subscribe(stream, "c", after=0)
    await settle()
    await engine.publish(ConversationUpdated(conversation=_conversation(1)))  # heard live meanwhile...
    await storage.store(_message(2), _message(3))  # ...then 2 and 3 are posted
    await engine.publish(MessageCreated(message=_message(2)), MessageCreated(message=_message(3)))
    await storage.release()
    assert sent(outlet) == [
        ("message.created", 1),
        ("conversation.updated", None),
        ("message.created", 2),
        ("message.created", 3),
    ]


async def test_a_resumed_stream_sends_a_stored_message_before_an_edit_of_it_heard_live(storage: Storage) -> None:
    await storage.store(_message(1), _message(2))  # both stored (and published) before the socket resumed
    engine = Engine(storage)
    stream, outlet = await engine.stream("u")
    await storage.hold()
    engine.hub.subscribe(stream, "c", after=1)
    await settle()
    await engine.publish(MessageUpdated(message=_message(2, "edited")))  # only the edit is heard live
    await storage.release()
    assert sent(outlet) == [("message.created", 2), ("message.updated", 2)]


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        ([2, 1, *range(3, 31)], [("message.created", seq) for seq in range(1, 31)]),
        # 21-29 were stored, their events not (yet) heard: more than the limit comes from storage alone
        ([2, 1, *range(3, 21), 30], [("message.created", seq) for seq in range(1, 21)] + [("resync", None)]),
    ],
)
async def test_a_catch_up_replays_what_it_heard_live_however_much_storage_holds_by_then(
    storage: Storage, heard: list[int], expected: list[tuple[str, int | None]]
) -> None:
    """Concurrent posts (PostgreSQL) may publish out of order: 2 heard before 1 starts a catch-up,
    and by the time storage answers it holds many more, each heard live meanwhile. Only messages
    storage alone can give count against the resync limit."""
    engine = Engine(storage, resync_limit=5)
    stream, outlet = await engine.stream("u")
    engine.hub.subscribe(stream, "c", after=None)
    await settle()
    await storage.hold()
    await storage.store(*(_message(seq) for seq in range(1, 31)))  # all committed
    for seq in heard:  # 2 before 1: a gap, so storage is read, and the rest arrive meanwhile
        await engine.publish(MessageCreated(message=_message(seq)))
    await storage.release()
    assert sent(outlet) == expected


async def test_a_resume_past_the_limit_is_told_to_resync_from_the_newest(storage: Storage) -> None:
    await storage.store(*(_message(seq) for seq in range(1, 11)))
    engine = Engine(storage, resync_limit=3)
    stream, outlet = await engine.stream("u")
    engine.hub.subscribe(stream, "c", after=2)
    await settle()
    assert [json.loads(f) for f in outlet.frames] == [{"type": "resync", "conversation_id": "c", "last_seq": 10}]
    await storage.store(_message(11))
    await engine.publish(MessageCreated(message=_message(11)))  # live again, straight after what it was told
    assert sent(outlet)[-1] == ("message.created", 11)


async def test_a_since_past_the_end_counts_as_the_end_when_it_was_asked(storage: Storage) -> None:
    """A since beyond the last seq (a client's counter from another server, or a bad one) is the
    end as of subscribing: a message posted while the starting point is read still arrives."""
    await storage.store(_message(1))
    engine = Engine(storage)
    stream, outlet = await engine.stream("u")
    await storage.hold()  # the starting point is still being read...
    engine.hub.subscribe(stream, "c", after=2**63 - 1)
    await settle()
    await storage.store(_message(2))  # ...when 2 is posted
    await engine.publish(MessageCreated(message=_message(2)))
    await storage.release()
    assert sent(outlet) == [("message.created", 2)]  # no resync, no replay of 1
    await storage.store(_message(3))
    await engine.publish(MessageCreated(message=_message(3)))
    assert sent(outlet)[-1] == ("message.created", 3)


async def test_a_member_who_leaves_hears_it_and_their_conversation_stream_ends(storage: Storage) -> None:
    engine = Engine(storage)
    chat, chat_outlet = await engine.stream("u", conversation_id="c")
    user, user_outlet = await engine.stream("u")
    for stream in (chat, user):
        engine.hub.subscribe(stream, "c", after=None)
    await settle()
    await engine.publish(MemberLeft(conversation_id="c", user_id="u", removed_by="o"))
    assert sent(chat_outlet) == sent(user_outlet) == [("member.left", None)]
    assert chat.ending is Ending.NOT_A_MEMBER  # a conversation socket has nothing left to carry
    assert user.ending is None and "c" not in user.subscriptions  # the user socket goes on without it
    await storage.store(_message(1))
    await engine.publish(MessageCreated(message=_message(1)))
    assert len(user_outlet.frames) == 1


async def test_logging_out_ends_that_sessions_streams_only(storage: Storage) -> None:
    engine = Engine(storage)
    mine, _ = await engine.stream("u")
    other = Stream(outlet=MemoryOutlet(), user_id="u", session_id="another", expires_at=LATER, queue_size=8)
    await engine.hub.register(other)
    await engine.publish(SessionRevoked(user_id="u", session_id="s-u"))
    assert mine.ending is Ending.LOGGED_OUT
    assert other.ending is None


async def test_a_consumer_too_slow_for_its_queue_is_ended_and_told_why(storage: Storage) -> None:
    engine = Engine(storage)
    reader = MemoryOutlet(capacity=1)  # its client reads nothing: the socket pushes back at once
    stream, _ = await engine.stream("u", outlet=reader, queue=3)
    engine.hub.subscribe(stream, "c", after=None)
    await settle()
    for seq in range(1, 6):
        await storage.store(_message(seq))
        await engine.publish(MessageCreated(message=_message(seq)))
    assert stream.ending is Ending.TOO_SLOW  # one written, three queued, the fifth had no room

    async def reads_nothing() -> None:
        await asyncio.sleep(0)

    await stream.serve(reads_nothing(), now=NOW)
    assert reader.ending is Ending.TOO_SLOW
    assert sent(reader) == [("message.created", 1)]  # the queue that overflowed is not waited on


async def test_a_consumer_that_catches_up_gets_everything_in_order(storage: Storage) -> None:
    engine = Engine(storage)
    reader = MemoryOutlet(capacity=2)
    stream, _ = await engine.stream("u", outlet=reader, queue=10)
    engine.hub.subscribe(stream, "c", after=None)
    await settle()
    for seq in range(1, 9):
        await storage.store(_message(seq))
        await engine.publish(MessageCreated(message=_message(seq)))
    taken = [await reader.take() for _ in range(8)]
    assert stream.ending is None
    assert [json.loads(frame or "{}")["message"]["seq"] for frame in taken] == list(range(1, 9))


async def test_a_stream_ends_when_its_token_expires() -> None:
    stream = Stream(outlet=(outlet := MemoryOutlet()), user_id="u", session_id="s", expires_at=NOW, queue_size=8)

    async def reads_forever() -> None:
        await asyncio.Event().wait()

    await stream.serve(reads_forever(), now=NOW)  # expired already: ended straight away
    assert outlet.ending is Ending.EXPIRED
