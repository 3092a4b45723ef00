"""One live socket as the real-time engine sees it: a ``Stream`` writing frames to an ``Outlet``.

Frames are written as they are offered, with no task or queue in between, whenever the socket
takes them. Only when it pushes back (the client reads slower than frames arrive) do frames wait
in a bounded queue, drained by a task that lives until the queue is empty again; a socket whose
queue overflows is a slow consumer and is ended (``Ending.TOO_SLOW``), to reconnect and resume.
An idle stream holds no task of its own: its token's expiry is a timer.
"""

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine
from datetime import datetime
from typing import Any

from convocore.application.ports import Ending, Outlet, StreamObserver

log = logging.getLogger("convocore.ws")
_ARRIVAL = itertools.count()  # the order frames reached the engine in, for frames held while syncing


class Unobserved:
    deliveries = 0

    def socket_opened(self) -> None: ...
    def socket_closed(self) -> None: ...
    def dropped(self) -> None: ...
    def resumed(self) -> None: ...
    def resynced(self) -> None: ...


UNOBSERVED = Unobserved()


class Stream:
    """One socket: its outlet, its bounded send queue, and the conversations it follows."""

    __slots__ = (
        "_ending", "_limit", "_outlet", "_pending", "_serving", "_writer",
        "conversation_id", "expires_at", "observer", "session_id", "subscriptions", "user_id",
    )  # fmt: skip

    def __init__(
        self,
        *,
        outlet: Outlet,
        user_id: str,
        session_id: str,
        expires_at: datetime,
        queue_size: int,
        conversation_id: str | None = None,
        observer: StreamObserver = UNOBSERVED,
    ) -> None:
        self.user_id, self.session_id, self.expires_at = user_id, session_id, expires_at
        self.observer = observer
        self.conversation_id = conversation_id  # None: the user socket, which follows them all
        self.subscriptions: dict[str, Subscription] = {}
        self._outlet = outlet
        self._limit = queue_size
        self._pending: deque[str] | None = None  # only while the socket pushes back
        self._writer: asyncio.Task[None] | None = None
        self._ending: Ending | None = None
        self._serving: asyncio.Task[Any] | None = None

    @property
    def ending(self) -> Ending | None:
        return self._ending

    def offer(self, frame: str) -> None:
        if self._ending is not None:
            return
        self.observer.deliveries += 1
        if self._writer is None:
            try:  # a failure here must stay this socket's: the caller is delivering to a room
                rest = self._outlet.send(frame)
            except Exception as error:
                self._failed(error)
                return
            if rest is not None:  # pushed back: what follows waits for the socket
                self._pending = deque()
                self._writer = asyncio.ensure_future(self._drain(rest))
            return
        pending = self._pending
        if pending is None:  # the writer is past its queue, finishing its last frame
            pending = self._pending = deque()
        if len(pending) >= self._limit:
            self.observer.dropped()
            self.end(Ending.TOO_SLOW)
            return
        pending.append(frame)

    def end(self, ending: Ending) -> None:
        """Ask for the stream to end: its reader stops at its next wait, wherever that is."""
        if self._ending is None:
            self._ending = ending
            if self._serving is not None:
                self._serving.cancel()

    async def serve(self, reader: Coroutine[Any, Any, None], *, now: datetime) -> None:
        """Run the reader until the client leaves, the token expires, or an ending is asked for;
        then end the socket saying why (what waits goes first, as far as the client reads)."""
        loop = asyncio.get_running_loop()
        self._serving = asyncio.current_task()
        expiry = loop.call_later(max((self.expires_at - now).total_seconds(), 0), self.end, Ending.EXPIRED)
        try:
            if self._ending is None:
                await reader
            else:
                reader.close()
        except asyncio.CancelledError:
            if self._ending is None:
                raise  # not ours: the server is stopping this handler
            if self._serving is not None:
                self._serving.uncancel()
        except Exception as error:
            log.warning("socket reader failed: %r", error)
        finally:
            expiry.cancel()
            self._serving = None
        ending = self._ending
        if ending is None:
            if self._writer is not None:
                self._writer.cancel()
            return
        try:
            if ending is Ending.TOO_SLOW:  # the queue is what overflowed: do not wait on it
                if self._writer is not None:
                    self._writer.cancel()
            elif self._writer is not None:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=1)
            await self._outlet.close(ending)
        except Exception:  # the client may already be gone; nothing is lost by not telling it
            log.debug("close after disconnect", exc_info=True)

    def _failed(self, error: BaseException) -> None:
        log.warning("socket write failed: %r", error)
        self._pending = None

    async def _drain(self, rest: Awaitable[None]) -> None:
        try:
            await rest
            while self._pending:
                more = self._outlet.send(self._pending.popleft())
                if more is not None:
                    await more
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failed(error)
        finally:
            self._writer = None
            self._pending = None  # an idle socket holds no queue


class Subscription:
    """One stream following one conversation, with the last seq it has delivered."""

    __slots__ = ("conversation_id", "held", "held_top", "last_seq", "stream", "syncing")

    def __init__(self, stream: Stream, conversation_id: str) -> None:
        self.stream, self.conversation_id = stream, conversation_id
        self.last_seq = 0
        self.syncing = True  # until the starting point is known, live frames wait in ``held``
        # (order key, seq or None, frame): messages by seq; any other event after the messages
        # that came before it, so a fresh subscription cannot see an edit before its message.
        self.held: list[tuple[tuple[int, int, int], int | None, str]] = []
        self.held_top = 0  # the newest seq among the held messages (0: none)

    def hold(self, seq: int | None, frame: str) -> None:
        if seq is not None:
            key = (seq, 0, next(_ARRIVAL))
            self.held_top = max(self.held_top, seq)
        else:
            key = (max(self.held_top, self.last_seq), 1, next(_ARRIVAL))
        self.held.append((key, seq, frame))

    def take_held(self) -> list[tuple[tuple[int, int, int], int | None, str]]:
        """What waited, in the order it goes out; nothing waits any more."""
        held, self.held, self.held_top = sorted(self.held), [], 0
        return held

    def held_seqs(self) -> list[int]:
        return [seq for _, seq, _ in self.held if seq is not None]
