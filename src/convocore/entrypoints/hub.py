"""This process's live sockets: fan-out of committed events, one encode per event.

Each socket has a bounded queue drained by its own writer task, so a slow reader never holds
up delivery to anyone else; one whose queue overflows is closed (4408) and may resume.

Per conversation, each subscription keeps the last seq it delivered. ``message.created``
frames go out strictly in seq order with no gap and no repeat: a repeat is dropped, and a gap
(an event lost while Redis was away, or two commits published out of order) is filled from
storage before anything newer goes out. Resume and a fresh subscription use the same path.
"""

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from convocore.application.realtime import Backlog
from convocore.domain.errors import NotFound
from convocore.domain.events import Event
from convocore.domain.messages import Message
from convocore.entrypoints import frames as f
from convocore.entrypoints import schemas as s
from convocore.entrypoints.direct import DirectWriter

log = logging.getLogger("convocore.ws")
_ARRIVAL = itertools.count()  # the order frames reached the hub in, for frames held while syncing

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_GOING_AWAY = 1001

Send = Callable[[dict[str, Any]], Awaitable[None]]
SERVER_SEND = "convocore.server_send"  # the ASGI server's own send, in a socket's scope (app.py)
Fetch = Callable[[str, int, int], Awaitable[Backlog]]
Follow = Callable[[str], Awaitable[None]]  # 'c:<conversation>' or 'u:<user>': hear of it from now on
Unfollow = Callable[[str], None]


async def _nothing_to_wait_for(_: str) -> None:
    return None


class Observer(Protocol):
    """What the hub reports as it works (the metrics). Called inline: every method must be cheap."""

    deliveries: int  # frames queued for sockets, added to per delivery (a method call there cost more)

    def socket_opened(self) -> None: ...
    def socket_closed(self) -> None: ...
    def dropped(self) -> None: ...  # a socket closed because its send queue overflowed
    def resumed(self) -> None: ...  # a stream picked up from a client's last seq
    def resynced(self) -> None: ...  # a gap too large to replay: the client was told to resync


class Unobserved:
    deliveries = 0

    def socket_opened(self) -> None: ...
    def socket_closed(self) -> None: ...
    def dropped(self) -> None: ...
    def resumed(self) -> None: ...
    def resynced(self) -> None: ...


UNOBSERVED = Unobserved()


class Connection:
    """One socket: a bounded send queue, its writer, and the conversations it follows.

    Frames are written as they are offered, without a task or a queue in between, whenever the
    socket can take them: the ASGI server's ``send`` for a writable socket finishes without
    suspending, so ``offer`` runs it to the end on the spot (see ``_step``). Only when the
    socket pushes back (the client reads slower than frames arrive) do frames wait in the
    bounded queue, written by a task that exists only until the queue is empty again. An idle
    socket holds no task of its own beyond the server's handler: its token expiry is a timer.
    """

    __slots__ = (
        "_close", "_direct", "_limit", "_pending", "_send", "_serving", "_write", "_writer",
        "conversation_id", "expires_at", "observer", "session_id", "subscriptions", "user_id",
    )  # fmt: skip

    def __init__(
        self,
        *,
        send: Send,
        user_id: str,
        session_id: str,
        expires_at: datetime,
        queue_size: int,
        conversation_id: str | None = None,
        observer: Observer = UNOBSERVED,
        write: Send | None = None,
        direct: DirectWriter | None = None,
    ) -> None:
        self.user_id, self.session_id, self.expires_at = user_id, session_id, expires_at
        self.observer = observer
        self.conversation_id = conversation_id  # None: the user socket, which follows them all
        self.subscriptions: dict[str, Subscription] = {}
        self._send = send  # the framework's: accept and close go through it
        self._write = write or send  # data frames: the server's own send where it is known
        self._direct = direct  # or, faster still, its transport (direct.py)
        self._pending: deque[str] | None = None  # only while the socket pushes back (``_writer``)
        self._limit = queue_size
        self._writer: asyncio.Task[None] | None = None
        self._close: tuple[int, str] | None = None
        self._serving: asyncio.Task[Any] | None = None

    @property
    def closed(self) -> bool:
        return self._close is not None

    @property
    def close_reason(self) -> tuple[int, str] | None:
        return self._close

    def offer(self, frame: str) -> None:
        if self._close is not None:
            return
        self.observer.deliveries += 1
        if self._writer is None:
            try:  # a failure here must stay this socket's: the caller is delivering to a room
                if self._direct is not None:
                    if self._direct.write(frame):
                        return
                    self._direct.flush()  # what waits goes first
                suspended = _step(self._write({"type": "websocket.send", "text": frame}))
            except Exception as error:  # the client is gone; the reader will see it too
                self._failed(error)
                return
            if suspended is not None:  # pushed back: the rest waits for the socket
                self._pending = deque()
                self._writer = asyncio.ensure_future(self._drain(suspended))
            return
        pending = self._pending
        if pending is None:  # the writer is past its queue, finishing its last frame
            pending = self._pending = deque()
        if len(pending) >= self._limit:
            self.observer.dropped()
            self.close(CLOSE_TOO_SLOW, "send queue overflowed; reconnect and resume")
            return
        pending.append(frame)

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            if self._serving is not None:
                self._serving.cancel()  # stops the reader at its next wait, wherever that is

    async def serve(self, reader: Awaitable[None]) -> None:
        """Run the reader until the client leaves, the token expires, or a close is asked for."""
        loop = asyncio.get_running_loop()
        self._serving = asyncio.current_task()
        expiry = loop.call_later(max((self.expires_at - datetime.now(UTC)).total_seconds(), 0), self._expired)
        try:
            if self._close is None:
                await reader
            elif isinstance(reader, Coroutine):
                reader.close()
        except asyncio.CancelledError:
            if self._close is None:
                raise  # not ours: the server is stopping this handler
            if self._serving is not None:
                self._serving.uncancel()
        except Exception as error:
            if not _is_disconnect(error):
                log.warning("socket reader failed: %r", error)
        finally:
            expiry.cancel()
            self._serving = None
        if self._close is None:
            if self._writer is not None:
                self._writer.cancel()
            return
        code, reason = self._close
        try:
            if code == CLOSE_TOO_SLOW:  # the queue is what overflowed: do not wait on it
                if self._writer is not None:
                    self._writer.cancel()
            elif self._writer is not None:  # say why before closing, as far as the client reads
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=1)
            if self._direct is not None:  # frames taken this round go before the close
                self._direct.flush()
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the client may already be gone; nothing is lost by not telling it
            log.debug("close after disconnect", exc_info=True)

    def _expired(self) -> None:
        self.close(CLOSE_UNAUTHENTICATED, "the access token expired; reconnect with a fresh one and resume")

    def _failed(self, error: BaseException) -> None:
        if not _is_disconnect(error):
            log.warning("socket write failed: %r", error)
        self._pending = None

    async def _drain(self, suspended: "_Suspended") -> None:
        try:
            await suspended
            while self._pending:
                await self._write({"type": "websocket.send", "text": self._pending.popleft()})
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failed(error)
        finally:
            self._writer = None
            self._pending = None  # an idle socket holds no queue


def _step(awaitable: Awaitable[None]) -> "_Suspended | None":
    """Run ``awaitable`` until it finishes (None) or first waits (what it waits on, to finish
    it in a task): a writable socket's ``send`` never waits, so this is a plain call."""
    steps = cast("Generator[Any, None, None]", awaitable.__await__())
    try:
        waiting_on = steps.send(None)
    except StopIteration:
        return None
    return _Suspended(steps, waiting_on)


class _Suspended:
    """The rest of a coroutine that ``_step`` started: awaiting this runs it to the end, as if
    it had been awaited from the start (the task waits on what it was waiting on)."""

    __slots__ = ("steps", "waiting_on")

    def __init__(self, steps: Generator[Any, None, None], waiting_on: Any) -> None:
        self.steps, self.waiting_on = steps, waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        waiting_on = self.waiting_on
        while True:
            try:
                yield waiting_on
            except BaseException as error:  # cancelled while waiting: pass it on
                try:
                    waiting_on = self.steps.throw(error)
                except StopIteration:
                    return
                continue
            try:
                waiting_on = self.steps.send(None)
            except StopIteration:
                return


def _is_disconnect(error: BaseException) -> bool:
    return type(error).__name__ in {"WebSocketDisconnect", "ClientDisconnected"} or isinstance(error, OSError)


class Subscription:
    """One connection following one conversation, with the last seq it has delivered."""

    __slots__ = ("connection", "conversation_id", "held", "held_top", "last_seq", "syncing")

    def __init__(self, connection: Connection, conversation_id: str) -> None:
        self.connection, self.conversation_id = connection, conversation_id
        self.last_seq = 0
        self.syncing = True  # until the starting point is known, live frames wait in ``held``
        # (order key, seq or None, frame): messages by seq; any other event after the messages
        # that came before it, so a fresh subscription cannot see an edit before its message.
        self.held: list[tuple[tuple[int, int, int], int | None, str]] = []
        self.held_top = 0  # the newest seq among the held messages (0: none)

    def hold(self, seq: int | None, text: str) -> None:
        if seq is not None:
            key = (seq, 0, next(_ARRIVAL))
            self.held_top = max(self.held_top, seq)
        else:
            key = (max(self.held_top, self.last_seq), 1, next(_ARRIVAL))
        self.held.append((key, seq, text))

    def take_held(self) -> list[tuple[tuple[int, int, int], int | None, str]]:
        """What waited, in the order it goes out; nothing waits any more."""
        held, self.held, self.held_top = sorted(self.held), [], 0
        return held

    def held_seqs(self) -> list[int]:
        return [seq for _, seq, _ in self.held if seq is not None]


class Hub:
    """``follow``/``unfollow`` tell the event feed (Redis) what this process has sockets for;
    a stream reads its starting point from storage only once the feed confirms it listens."""

    def __init__(
        self,
        *,
        fetch: Fetch,
        resync_limit: int = 500,
        follow: Follow = _nothing_to_wait_for,
        unfollow: Unfollow = lambda _: None,
        session_alive: Callable[[str], Awaitable[bool]] | None = None,
        observer: Observer = UNOBSERVED,
    ) -> None:
        self.observer = observer
        self._fetch, self._resync_limit = fetch, resync_limit
        self._session_alive = session_alive
        self._follow, self._unfollow = follow, unfollow
        self._rooms: dict[str, set[Subscription]] = {}
        self._listening: dict[str, Awaitable[None]] = {}
        self._users: dict[str, set[Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- connections and subscriptions -------------------------------------------------

    async def register(self, connection: Connection) -> None:
        """Count the connection in; returns once events about its user reach this process."""
        connections = self._users.setdefault(connection.user_id, set())
        connections.add(connection)
        self.observer.socket_opened()
        if len(connections) == 1:
            await _bounded(self._follow(f"u:{connection.user_id}"))

    def unregister(self, connection: Connection) -> None:
        for conversation_id in list(connection.subscriptions):
            self.unsubscribe(connection, conversation_id)
        users = self._users.get(connection.user_id)
        if users is not None and connection in users:
            self.observer.socket_closed()
            users.discard(connection)
            if not users:
                del self._users[connection.user_id]
                self._unfollow(f"u:{connection.user_id}")

    def subscribe(self, connection: Connection, conversation_id: str, *, after: int | None) -> Subscription:
        """Follow a conversation from just after ``after`` (replaying from storage), or from
        now when ``after`` is None. Live frames wait until the starting point is settled."""
        sub = connection.subscriptions.get(conversation_id)
        if sub is None:
            sub = connection.subscriptions[conversation_id] = Subscription(connection, conversation_id)
            room = self._rooms.setdefault(conversation_id, set())
            if not room:
                self._listening[conversation_id] = asyncio.ensure_future(self._follow(f"c:{conversation_id}"))
            room.add(sub)
        sub.syncing = True
        self._spawn(self._sync(sub, after=after))
        return sub

    def unsubscribe(self, connection: Connection, conversation_id: str) -> None:
        sub = connection.subscriptions.pop(conversation_id, None)
        room = self._rooms.get(conversation_id)
        if sub is not None and room is not None:
            room.discard(sub)
            if not room:
                del self._rooms[conversation_id]
                self._listening.pop(conversation_id, None)
                self._unfollow(f"c:{conversation_id}")

    def catch_up_all(self) -> None:
        """After an outage of the event feed: check every subscription against storage, and
        every socket's login (a logout may have gone unheard)."""
        for room in self._rooms.values():
            for sub in room:
                if not sub.syncing:
                    sub.syncing = True
                    self._spawn(self._sync(sub, after=sub.last_seq))
        if self._session_alive is not None:
            for connections in self._users.values():
                for connection in connections:
                    self._spawn(self._recheck(connection))

    async def _recheck(self, connection: Connection) -> None:
        assert self._session_alive is not None
        with contextlib.suppress(Exception):  # storage down too: the expiry timer still holds
            if not await self._session_alive(connection.session_id):
                connection.close(CLOSE_UNAUTHENTICATED, "logged out")

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for connections in list(self._users.values()):
            for connection in connections:
                connection.close(code, reason)
        for task in list(self._tasks):
            task.cancel()

    # -- delivery --------------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """An event of this process: encoded here, once."""
        self._deliver(f.route_of(event), f.frame_text(event))

    def dispatch_wire(self, data: bytes) -> None:
        """An event of another process, already encoded there."""
        route, text = f.wire_decode(data)
        self._deliver(route, text)

    def _deliver(self, route: f.Route, text: str) -> None:
        kind, cid = route.kind, route.conversation_id
        if kind == "session.revoked":
            for connection in tuple(self._users.get(route.user_id or "", ())):
                if connection.session_id == route.session_id:
                    connection.close(CLOSE_UNAUTHENTICATED, "logged out")
            return
        if kind == "presence":
            targets = {sub.connection for c in route.conversation_ids for sub in self._rooms.get(c, ())}
            for connection in targets:
                connection.offer(text)
            return
        if cid is None:
            return
        if kind == "member.joined":
            followed = self._follow_new_membership(route, text)
            for sub in tuple(self._rooms.get(cid, ())):
                if sub.connection not in followed:  # those have it already
                    self._offer_event(sub, text)
            return
        room = self._rooms.get(cid, ())
        if kind == "message.created":
            seq = route.seq
            for sub in tuple(room):
                if not sub.syncing and seq == sub.last_seq + 1:  # ``_accept``'s usual case, inline:
                    sub.last_seq = seq  # this runs once per delivery
                    sub.connection.offer(text)
                else:
                    self._accept(sub, seq, text)
        elif kind == "member.left":  # straight away: the leaver's own subscription ends here
            for sub in tuple(room):
                sub.connection.offer(text)
            self._drop_membership(cid, route.user_id or "")
        else:
            for sub in tuple(room):
                self._offer_event(sub, text)

    def _follow_new_membership(self, route: f.Route, text: str) -> tuple[Connection, ...]:
        """Have the new member's user sockets follow the conversation, each told of its joining
        (``text``) first: the frame goes out before the subscription reads its starting point,
        since every message it may replay from storage came after the joining (held with the
        live frames, it went out after that replay). Returns the sockets told."""
        followed: tuple[Connection, ...] = ()
        for connection in tuple(self._users.get(route.user_id or "", ())):
            cid = route.conversation_id or ""
            if connection.conversation_id is None and cid not in connection.subscriptions:
                connection.offer(text)
                self.subscribe(connection, cid, after=route.start_seq)
                followed += (connection,)
        return followed

    def _drop_membership(self, conversation_id: str, user_id: str) -> None:
        for sub in tuple(self._rooms.get(conversation_id, ())):
            if sub.connection.user_id != user_id:
                continue
            self.unsubscribe(sub.connection, conversation_id)
            if sub.connection.conversation_id is not None:
                sub.connection.close(CLOSE_FORBIDDEN, "no longer a member")

    def _offer_event(self, sub: Subscription, text: str) -> None:
        """Any event but a new message: after the messages before it, so held while syncing."""
        if sub.syncing:
            sub.hold(None, text)
        else:
            sub.connection.offer(text)

    def _accept(self, sub: Subscription, seq: int, text: str) -> None:
        if sub.syncing:
            sub.hold(seq, text)
        elif seq <= sub.last_seq:
            return  # already delivered (a replay overlapped the live stream)
        elif seq == sub.last_seq + 1:
            sub.last_seq = seq
            sub.connection.offer(text)
        else:  # a gap: fill it from storage before anything newer goes out
            sub.hold(seq, text)
            sub.syncing = True
            self._spawn(self._sync(sub, after=sub.last_seq))

    async def _sync(self, sub: Subscription, *, after: int | None) -> None:
        cid, connection = sub.conversation_id, sub.connection
        listening = self._listening.get(cid)
        if listening is not None:
            await _bounded(listening)  # read the starting point only once live events flow
        try:
            limit = 0 if after is None else self._resync_limit + 1
            backlog = await self._fetch(cid, after or 0, limit)
        except NotFound:
            self.unsubscribe(connection, cid)
            return
        except Exception:
            log.exception("catching up %s failed; asking the client to resync", cid)
            backlog = None
        stored: Sequence[Message] = ()
        if backlog is None or self._past_limit(sub, backlog.messages):
            newest = max(sub.held_top, backlog.last_seq if backlog else sub.last_seq)
            connection.offer(f.encode(f.ResyncFrame(conversation_id=cid, last_seq=newest)))
            self.observer.resynced()
            sub.last_seq = newest
        elif after is None:
            # "From now": everything heard live since subscribing counts as new, even if it was
            # committed before the starting point was read.
            sub.last_seq = min([seq - 1 for seq in sub.held_seqs()] + [backlog.last_seq])
        else:
            sub.last_seq = min(after, backlog.last_seq)
            stored = backlog.messages
        self._replay(sub, stored)

    def _past_limit(self, sub: Subscription, backlog: Sequence[Message]) -> bool:
        """Whether catching up would replay more stored messages than the limit. Those heard
        live meanwhile go out from what was held, not from storage, so they do not count: on
        PostgreSQL concurrent posts may publish out of order, and the catch-up one starts may
        find many more stored by the time storage answers, nearly all of them heard live."""
        if len(backlog) <= self._resync_limit:
            return False
        heard = set(sub.held_seqs())
        return sum(1 for m in backlog if m.seq not in heard) > self._resync_limit

    def _replay(self, sub: Subscription, backlog: Sequence[Message]) -> None:
        """Send what storage holds after ``sub.last_seq`` (``backlog``; none when the starting
        point is "from now" or a resync) merged with what was heard live meanwhile, in the
        order it happened, and end the catching up. A stored message not heard live was published
        before the subscription listened, so it goes before everything heard; one heard live
        goes where it was heard, after the events that came before it (a member joining, a
        rename): replayed first, it would overtake them."""
        held = sub.take_held()
        sub.syncing = False
        cid, connection = sub.conversation_id, sub.connection
        stored = iter(backlog)
        pending = next(stored, None)

        def replay_below(seq: int | None) -> None:
            nonlocal pending
            while pending is not None and (seq is None or pending.seq < seq) and not sub.syncing:
                if pending.seq == sub.last_seq + 1:
                    frame = f.MessageCreatedFrame(conversation_id=cid, message=s.message_out(pending))
                    connection.offer(f.encode(frame))
                    sub.last_seq = pending.seq
                pending = next(stored, None)

        replay_below(min((seq for _, seq, _ in held if seq is not None), default=None))
        for _, seq, text in held:
            if seq is None:
                self._offer_event(sub, text)  # (held again if a gap started another catch-up)
            else:
                replay_below(seq)
                self._accept(sub, seq, text)
        replay_below(None)  # stored, its live event not heard yet (it will be a repeat)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _bounded(waiting: Awaitable[None], seconds: float = 5) -> None:
    """Wait for the feed to confirm, but never hang a socket on it: a late confirmation only
    risks a gap, which the next event (or a reconnect to Redis) fills from storage."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(waiting)), seconds)
