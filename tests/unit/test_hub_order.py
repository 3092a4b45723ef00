"""The socket hub keeps a conversation's events in order for a subscription that is still
reading its starting point from storage (entrypoints/hub.py): frames that arrive meanwhile wait,
and an edit never overtakes the message it edits."""

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from convocore.application.realtime import Backlog
from convocore.domain.conversations import Conversation, Kind, Member, Role
from convocore.domain.events import ConversationUpdated, MemberJoined, MessageCreated, MessageUpdated
from convocore.domain.messages import Message
from convocore.entrypoints.hub import Connection, Hub

NOW = datetime(2026, 1, 1, tzinfo=UTC)


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


async def test_events_that_arrive_while_a_subscription_starts_keep_their_order() -> None:
    storage_answers = asyncio.Event()

    async def fetch(conversation_id: str, after: int, limit: int) -> Backlog:
        await storage_answers.wait()  # the starting point is still being read
        return Backlog(messages=[], last_seq=0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(json.loads(message["text"]))

    hub = Hub(fetch=fetch)
    connection = Connection(send=send, user_id="u", session_id="s", expires_at=NOW.replace(year=2100), queue_size=64)
    await hub.register(connection)
    hub.subscribe(connection, "c", after=None)
    await asyncio.sleep(0)

    conversation = Conversation(
        id="c", kind=Kind.GROUP, title="renamed", public=False, created_by="u", created_at=NOW,
        last_activity_at=NOW, last_seq=2, member_count=1, direct_key=None,
    )  # fmt: skip
    hub.dispatch(MessageCreated(message=_message(2)))  # committed out of order: 2 before 1
    hub.dispatch(MessageCreated(message=_message(1)))
    hub.dispatch(MessageUpdated(message=_message(1, "edited")))
    hub.dispatch(ConversationUpdated(conversation=conversation))
    assert sent == []  # all held until the starting point is known

    storage_answers.set()
    for _ in range(20):
        await asyncio.sleep(0)

    assert [(f["type"], f.get("message", {}).get("seq")) for f in sent] == [
        ("message.created", 1),
        ("message.created", 2),
        ("message.updated", 1),
        ("conversation.updated", None),
    ]


async def test_a_live_gap_is_filled_from_storage_and_a_repeat_is_not_sent_again() -> None:
    stored = {seq: _message(seq) for seq in range(1, 5)}
    last_stored = 0

    async def fetch(conversation_id: str, after: int, limit: int) -> Backlog:
        return Backlog(messages=[stored[s] for s in range(after + 1, last_stored + 1)], last_seq=last_stored)

    sent: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(json.loads(message["text"])["message"]["seq"])

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    hub = Hub(fetch=fetch)
    connection = Connection(send=send, user_id="u", session_id="s", expires_at=NOW.replace(year=2100), queue_size=64)
    await hub.register(connection)
    hub.subscribe(connection, "c", after=None)
    await settle()

    last_stored = 1
    hub.dispatch(MessageCreated(message=stored[1]))
    last_stored = 3  # 2 was committed, but its event never reached this process
    hub.dispatch(MessageCreated(message=stored[3]))
    await settle()
    assert sent == [1, 2, 3]  # 2 read from storage, before 3

    hub.dispatch(MessageCreated(message=stored[3]))  # heard twice (a replay overlapping the stream)
    last_stored = 4
    hub.dispatch(MessageCreated(message=stored[4]))
    await settle()
    assert sent == [1, 2, 3, 4]


class _Gated:
    """A hub whose storage answers only once ``answer()`` is called, holding ``stored``; what
    its sockets are sent, as (frame type, message seq)."""

    def __init__(self, stored: list[Message], *, resync_limit: int = 500) -> None:
        self.stored = stored
        self.sent: list[tuple[str, int | None]] = []
        self._answers = asyncio.Event()
        self.hub = Hub(fetch=self._fetch, resync_limit=resync_limit)

    async def _fetch(self, conversation_id: str, after: int, limit: int) -> Backlog:
        await self._answers.wait()
        last = max((m.seq for m in self.stored), default=0)
        return Backlog(messages=[m for m in self.stored if m.seq > after][:limit], last_seq=last)

    def withhold(self) -> None:
        """Storage answers again only at the next ``answer()``."""
        self._answers.clear()

    async def _send(self, message: dict[str, Any]) -> None:
        frame = json.loads(message["text"])
        self.sent.append((frame["type"], frame.get("message", {}).get("seq")))

    async def socket(self, user_id: str) -> Connection:
        connection = Connection(
            send=self._send,
            user_id=user_id,
            session_id=f"s-{user_id}",
            expires_at=NOW.replace(year=2100),
            queue_size=64,
        )
        await self.hub.register(connection)
        return connection

    async def answer(self) -> None:
        self._answers.set()
        for _ in range(20):
            await asyncio.sleep(0)


async def test_a_new_member_hears_of_joining_before_the_messages_that_follow_it() -> None:
    """Messages posted straight after a member joined reach their socket after the joining,
    whether storage replays them (committed before the starting point was read) or they are
    heard live."""
    gated = _Gated([])
    await gated.socket("u")
    member = Member(conversation_id="c", user_id="u", role=Role.MEMBER, joined_at=NOW)
    gated.hub.dispatch(MemberJoined(conversation_id="c", member=member, user=None))
    gated.stored.extend([_message(1), _message(2)])  # committed before the starting point is read
    gated.hub.dispatch(MessageCreated(message=_message(2)))  # and 2's event heard while it is read
    await gated.answer()
    assert gated.sent == [("member.joined", None), ("message.created", 1), ("message.created", 2)]

    watcher = await gated.socket("w")  # someone already following the conversation hears it too
    gated.hub.subscribe(watcher, "c", after=None)
    await gated.answer()
    gated.sent.clear()
    other = Member(conversation_id="c", user_id="v", role=Role.MEMBER, joined_at=NOW)
    gated.hub.dispatch(MemberJoined(conversation_id="c", member=other, user=None))
    assert gated.sent == [("member.joined", None), ("member.joined", None)]  # the newcomer's and the watcher's sockets


async def _resumed(
    stored: list[Message], during: Callable[[Hub], None], *, after: int = 0
) -> list[tuple[str, int | None]]:
    """What a socket resuming after ``after`` is sent when ``during`` dispatches events while
    its starting point is read (``stored`` is what storage then holds)."""
    gated = _Gated(stored)
    gated.hub.subscribe(await gated.socket("u"), "c", after=after)
    await asyncio.sleep(0)
    during(gated.hub)
    await gated.answer()
    return gated.sent


def _renamed() -> ConversationUpdated:
    conversation = Conversation(
        id="c", kind=Kind.GROUP, title="renamed", public=False, created_by="u", created_at=NOW,
        last_activity_at=NOW, last_seq=2, member_count=1, direct_key=None,
    )  # fmt: skip
    return ConversationUpdated(conversation=conversation)


async def test_a_resumed_stream_keeps_an_event_heard_live_before_the_messages_that_followed_it() -> None:
    stored = [_message(1)]  # stored (and published) before the socket resumed: not heard live

    def meanwhile(hub: Hub) -> None:
        hub.dispatch(_renamed())  # heard live while the starting point is read...
        stored.extend([_message(2), _message(3)])  # ...then 2 and 3 are posted
        hub.dispatch(MessageCreated(message=_message(2)))
        hub.dispatch(MessageCreated(message=_message(3)))

    assert await _resumed(stored, meanwhile) == [
        ("message.created", 1),
        ("conversation.updated", None),
        ("message.created", 2),
        ("message.created", 3),
    ]


async def test_a_resumed_stream_sends_a_stored_message_before_an_edit_of_it_heard_live() -> None:
    stored = [_message(1), _message(2)]  # both stored (and published) before the socket resumed

    def meanwhile(hub: Hub) -> None:
        hub.dispatch(MessageUpdated(message=_message(2, "edited")))  # only the edit is heard live

    assert await _resumed(stored, meanwhile, after=1) == [("message.created", 2), ("message.updated", 2)]


async def test_a_catch_up_replays_what_it_heard_live_however_much_storage_holds_by_then() -> None:
    """Concurrent posts (PostgreSQL) may publish out of order: 2 heard before 1 starts a catch-up,
    and by the time storage answers it holds many more, each heard live meanwhile. Only messages
    storage alone can give count against the resync limit, so the socket gets them all in order;
    past the limit, it is still told to resync."""

    async def catch_up(heard: list[int]) -> list[tuple[str, int | None]]:
        gated = _Gated([], resync_limit=5)
        gated.hub.subscribe(await gated.socket("u"), "c", after=None)
        await gated.answer()
        gated.withhold()
        gated.stored.extend(_message(seq) for seq in range(1, 31))  # all committed
        for seq in heard:  # 2 before 1: a gap, so storage is read, and the rest arrive meanwhile
            gated.hub.dispatch(MessageCreated(message=_message(seq)))
        await gated.answer()
        return gated.sent

    everything = [2, 1, *range(3, 31)]
    assert await catch_up(everything) == [("message.created", seq) for seq in range(1, 31)]
    unheard = [2, 1, *range(3, 21), 30]  # 21-29 were stored, their events not (yet) heard
    assert await catch_up(unheard) == [("message.created", seq) for seq in range(1, 21)] + [("resync", None)]
