"""The real-time engine: this process's live streams and the order of what they are sent.

Every committed event, this process's and (through the broadcaster) other processes', comes to
``Hub.dispatch``, is encoded once and offered to the streams that follow its conversation or
user. Per conversation, each subscription keeps the last seq it delivered: ``message.created``
frames go out strictly in seq order with no gap and no repeat. A repeat is dropped; a gap (an
event lost while Redis was away, or two commits published out of order) is filled from storage
before anything newer goes out; a gap past ``resync_limit`` is answered with a resync. Resume
and a fresh subscription take the same path.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

from convocore.application.ports import Broadcaster, Ending, Frames, StreamObserver
from convocore.application.realtime import interests
from convocore.application.realtime.streams import UNOBSERVED, Stream, Subscription
from convocore.application.realtime.use_cases import Backlog, CatchUp, SessionAlive
from convocore.domain import events as ev
from convocore.domain.errors import NotFound, RateLimited
from convocore.domain.events import Event
from convocore.domain.messages import Message

log = logging.getLogger("convocore.ws")


class Hub:
    """A stream reads its starting point from storage only once the broadcaster confirms it
    hears the conversation's events, so nothing committed in between is missed."""

    def __init__(
        self,
        *,
        catch_up: CatchUp,
        frames: Frames,
        feed: Broadcaster,
        session_alive: SessionAlive | None = None,
        resync_limit: int = 500,
        max_streams_per_user: int = 16,
        observer: StreamObserver = UNOBSERVED,
    ) -> None:
        self.observer = observer
        self._max_streams = max_streams_per_user
        self._catch_up, self._frames, self._feed = catch_up, frames, feed
        self._session_alive, self._resync_limit = session_alive, resync_limit
        self._rooms: dict[str, set[Subscription]] = {}
        self._listening: dict[str, Awaitable[None]] = {}
        self._users: dict[str, set[Stream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        feed.add_listener(self.dispatch)
        feed.on_gap(self.catch_up_all)

    # -- streams and subscriptions -----------------------------------------------------

    async def register(self, stream: Stream) -> None:
        """Count the stream in; returns once events about its user reach this process.
        ``RateLimited`` when the person has as many live streams here as allowed."""
        streams = self._users.setdefault(stream.user_id, set())
        if len(streams) >= self._max_streams:
            raise RateLimited(f"at most {self._max_streams} live sockets per person; close one first")
        streams.add(stream)
        self.observer.socket_opened()
        if len(streams) == 1:
            await _bounded(self._feed.follow(interests.of_user(stream.user_id)))

    def unregister(self, stream: Stream) -> None:
        for conversation_id in list(stream.subscriptions):
            self.unsubscribe(stream, conversation_id)
        streams = self._users.get(stream.user_id)
        if streams is not None and stream in streams:
            self.observer.socket_closed()
            streams.discard(stream)
            if not streams:
                del self._users[stream.user_id]
                self._feed.unfollow(interests.of_user(stream.user_id))

    def subscribe(self, stream: Stream, conversation_id: str, *, after: int | None) -> Subscription:
        """Follow a conversation from just after ``after`` (replaying from storage), or from
        now when ``after`` is None. Live frames wait until the starting point is settled."""
        sub = stream.subscriptions.get(conversation_id)
        if sub is None:
            sub = stream.subscriptions[conversation_id] = Subscription(stream, conversation_id)
            room = self._rooms.setdefault(conversation_id, set())
            if not room:
                hearing = self._feed.follow(interests.of_conversation(conversation_id))
                self._listening[conversation_id] = asyncio.ensure_future(hearing)
            room.add(sub)
        sub.syncing = True
        self._spawn(self._sync(sub, after=after))
        return sub

    def resume(self, stream: Stream, since: dict[str, int]) -> list[str]:
        """Replay each followed conversation from just after its seq in ``since``; returns
        the conversations named that the stream does not follow (left alone)."""
        for conversation_id, seq in since.items():
            if conversation_id in stream.subscriptions:
                self.subscribe(stream, conversation_id, after=seq)
                self.observer.resumed()
        return sorted(cid for cid in since if cid not in stream.subscriptions)

    def unsubscribe(self, stream: Stream, conversation_id: str) -> None:
        sub = stream.subscriptions.pop(conversation_id, None)
        room = self._rooms.get(conversation_id)
        if sub is not None and room is not None:
            room.discard(sub)
            if not room:
                del self._rooms[conversation_id]
                self._listening.pop(conversation_id, None)
                self._feed.unfollow(interests.of_conversation(conversation_id))

    def catch_up_all(self) -> None:
        """After an outage of the event feed: check every subscription against storage, and
        every stream's login (a logout may have gone unheard)."""
        for room in self._rooms.values():
            for sub in room:
                if not sub.syncing:
                    sub.syncing = True
                    self._spawn(self._sync(sub, after=sub.last_seq))
        if self._session_alive is not None:
            for streams in self._users.values():
                for stream in streams:
                    self._spawn(self._recheck(stream))

    async def _recheck(self, stream: Stream) -> None:
        assert self._session_alive is not None
        with contextlib.suppress(Exception):  # storage down too: the expiry timer still holds
            if not await self._session_alive.execute(session_id=stream.session_id):
                stream.end(Ending.LOGGED_OUT)

    async def close_all(self) -> None:
        for streams in list(self._users.values()):
            for stream in streams:
                stream.end(Ending.GOING_AWAY)
        for task in list(self._tasks):
            task.cancel()

    # -- delivery --------------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """A committed event, encoded here once for every stream it goes to."""
        match event:
            case ev.MessageCreated(message=message):
                self._message_created(message.conversation_id, message.seq, event)
            case ev.SessionRevoked(user_id=user_id, session_id=session_id):
                for stream in tuple(self._users.get(user_id, ())):
                    if stream.session_id == session_id:
                        stream.end(Ending.LOGGED_OUT)
            case ev.PresenceChanged(conversation_ids=conversation_ids):
                targets = {sub.stream for cid in conversation_ids for sub in self._rooms.get(cid, ())}
                if targets:
                    frame = self._frames.event(event)
                    for stream in targets:
                        stream.offer(frame)
            case ev.MemberJoined(conversation_id=cid, member=member):
                frame = self._frames.event(event)
                told = self._follow_new_membership(cid, member.user_id, member.last_read_seq, frame)
                for sub in tuple(self._rooms.get(cid, ())):
                    if sub.stream not in told:  # those have it already
                        self._offer_event(sub, frame)
            case ev.MemberLeft(conversation_id=cid, user_id=user_id):
                room = tuple(self._rooms.get(cid, ()))
                if room:  # straight away: the leaver's own subscription ends here
                    frame = self._frames.event(event)
                    for sub in room:
                        sub.stream.offer(frame)
                self._drop_membership(cid, user_id)
            case _:
                room = tuple(self._rooms.get(event.conversation_id, ()))
                if room:
                    frame = self._frames.event(event)
                    for sub in room:
                        self._offer_event(sub, frame)

    def _message_created(self, conversation_id: str, seq: int, event: Event) -> None:
        room = self._rooms.get(conversation_id)
        if not room:
            return
        frame = self._frames.event(event)
        for sub in tuple(room):
            if not sub.syncing and seq == sub.last_seq + 1:  # ``_accept``'s usual case, inline:
                sub.last_seq = seq  # this runs once per delivery
                sub.stream.offer(frame)
            else:
                self._accept(sub, seq, frame)

    def _follow_new_membership(self, conversation_id: str, user_id: str, start: int, frame: str) -> tuple[Stream, ...]:
        """Have the new member's user streams follow the conversation, each told of its joining
        first: every message a subscription may replay from storage came after the joining.
        Returns the streams told."""
        told: tuple[Stream, ...] = ()
        for stream in tuple(self._users.get(user_id, ())):
            if stream.conversation_id is None and conversation_id not in stream.subscriptions:
                stream.offer(frame)
                self.subscribe(stream, conversation_id, after=start)
                told += (stream,)
        return told

    def _drop_membership(self, conversation_id: str, user_id: str) -> None:
        for sub in tuple(self._rooms.get(conversation_id, ())):
            if sub.stream.user_id != user_id:
                continue
            self.unsubscribe(sub.stream, conversation_id)
            if sub.stream.conversation_id is not None:
                sub.stream.end(Ending.NOT_A_MEMBER)

    def _offer_event(self, sub: Subscription, frame: str) -> None:
        """Any event but a new message: after the messages before it, so held while syncing."""
        if sub.syncing:
            sub.hold(None, frame)
        else:
            sub.stream.offer(frame)

    def _accept(self, sub: Subscription, seq: int, frame: str) -> None:
        if sub.syncing:
            sub.hold(seq, frame)
        elif seq <= sub.last_seq:
            return  # already delivered (a replay overlapped the live stream)
        elif seq == sub.last_seq + 1:
            sub.last_seq = seq
            sub.stream.offer(frame)
        else:  # a gap: fill it from storage before anything newer goes out
            sub.hold(seq, frame)
            sub.syncing = True
            self._spawn(self._sync(sub, after=sub.last_seq))

    async def _sync(self, sub: Subscription, *, after: int | None) -> None:
        cid, stream = sub.conversation_id, sub.stream
        listening = self._listening.get(cid)
        if listening is not None:
            await _bounded(listening)  # read the starting point only once live events flow
        try:
            limit = 0 if after is None else self._resync_limit + 1
            backlog: Backlog | None = await self._catch_up.execute(conversation_id=cid, after=after or 0, limit=limit)
        except NotFound:
            self.unsubscribe(stream, cid)
            return
        except Exception:
            log.exception("catching up %s failed; asking the client to resync", cid)
            backlog = None
        stored: Sequence[Message] = ()
        if backlog is None or self._past_limit(sub, backlog.messages):
            newest = max(sub.held_top, backlog.last_seq if backlog else sub.last_seq)
            stream.offer(self._frames.resync(cid, newest))
            self.observer.resynced()
            sub.last_seq = newest
        elif after is None or after > backlog.last_seq:
            # "From now", or from past the end (which counts as the end when it was asked):
            # everything heard live since subscribing counts as new, even if it was committed
            # before the starting point was read.
            sub.last_seq = min([seq - 1 for seq in sub.held_seqs()] + [backlog.last_seq])
        else:
            sub.last_seq = min(after, backlog.last_seq)
            stored = backlog.messages
        self._replay(sub, stored)

    def _past_limit(self, sub: Subscription, backlog: Sequence[Message]) -> bool:
        """Whether catching up would replay more stored messages than the limit. Those heard
        live meanwhile go out from what was held, not from storage, so they do not count."""
        if len(backlog) <= self._resync_limit:
            return False
        heard = set(sub.held_seqs())
        return sum(1 for m in backlog if m.seq not in heard) > self._resync_limit

    def _replay(self, sub: Subscription, backlog: Sequence[Message]) -> None:
        """Send what storage holds after ``sub.last_seq`` merged with what was heard live
        meanwhile, in the order it happened, and end the catching up. A stored message not
        heard live was published before the subscription listened, so it goes before
        everything heard; one heard live goes where it was heard, after the events that came
        before it (a member joining, a rename): replayed first, it would overtake them."""
        held = sub.take_held()
        sub.syncing = False
        stored = iter(backlog)
        pending = next(stored, None)

        def replay_below(seq: int | None) -> None:
            nonlocal pending
            while pending is not None and (seq is None or pending.seq < seq) and not sub.syncing:
                if pending.seq == sub.last_seq + 1:
                    sub.stream.offer(self._frames.event(ev.MessageCreated(message=pending)))
                    sub.last_seq = pending.seq
                pending = next(stored, None)

        replay_below(min((seq for _, seq, _ in held if seq is not None), default=None))
        for _, seq, frame in held:
            if seq is None:
                self._offer_event(sub, frame)  # (held again if a gap started another catch-up)
            else:
                replay_below(seq)
                self._accept(sub, seq, frame)
        replay_below(None)  # stored, its live event not heard yet (it will be a repeat)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _bounded(waiting: Awaitable[None], seconds: float = 5) -> None:
    """Wait for the feed to confirm, but never hang a stream on it: a late confirmation only
    risks a gap, which the next event (or the feed's return after an outage) fills from storage."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(waiting)), seconds)
