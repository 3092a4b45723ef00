"""In-memory live delivery, presence and rate limits for one process, and a stream's outlet
kept in memory: production code for the embedded mode and for tests."""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from convocore.application.ports import Ending
from convocore.domain.events import Event


class MemoryPresenceStore:
    """Presence for one process: its own sockets are all there is."""

    def __init__(self) -> None:
        self._sockets: dict[str, int] = {}

    async def connected(self, user_id: str) -> bool:
        self._sockets[user_id] = self._sockets.get(user_id, 0) + 1
        return self._sockets[user_id] == 1

    async def disconnected(self, user_id: str) -> bool:
        left = self._sockets.get(user_id, 0) - 1
        if left > 0:
            self._sockets[user_id] = left
            return False
        return self._sockets.pop(user_id, None) is not None

    async def expired(self) -> list[str]:
        return []  # a process cannot outlive itself

    async def online(self, user_ids: Sequence[str]) -> set[str]:
        return {uid for uid in user_ids if uid in self._sockets}


class MemoryRateLimiter:
    """Sliding-window budgets for one process."""

    def __init__(self) -> None:
        self._events: dict[str, deque[float]] = {}

    async def hit(self, key: str, *, limit: int, window_s: float) -> float | None:
        now = time.monotonic()
        recent = self._events.setdefault(key, deque())
        while recent and now - recent[0] >= window_s:
            recent.popleft()
        if len(recent) >= limit:
            return window_s - (now - recent[0])
        recent.append(now)
        if len(self._events) > 100_000:  # forget idle keys so the map stays small
            self._events = {k: q for k, q in self._events.items() if q and now - q[-1] < window_s}
        return None


Listener = Callable[[Event], None]


class InProcessBroadcaster:
    """Hands each event straight to this process's listeners (the real-time engine): there are
    no other processes, so every interest is heard from the start and nothing is ever missed."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def on_gap(self, callback: Callable[[], None]) -> None:
        return None  # nothing between publishing and hearing can lose an event

    async def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)

    async def follow(self, interest: str) -> None:
        return None

    def unfollow(self, interest: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ping(self) -> None:
        return None


class MemoryOutlet:
    """A live stream's sending side kept in memory (no socket), for a program that embeds
    Convocore and for tests: every frame it was sent, in order, and why it ended. With a
    ``capacity``, it pushes back, as a socket whose client reads slowly does, once that many
    frames wait unread (``take`` reads them)."""

    def __init__(self, *, capacity: int | None = None) -> None:
        self.frames: list[str] = []
        self.ending: Ending | None = None
        self._capacity = capacity
        self._taken = 0
        self._changed = asyncio.Event()

    def send(self, frame: str) -> Awaitable[None] | None:
        self.frames.append(frame)
        self._changed.set()
        return asyncio.ensure_future(self._room()) if self._full() else None

    async def close(self, ending: Ending) -> None:
        self.ending = ending
        self._changed.set()

    async def take(self) -> str | None:
        """The next frame not taken yet, once there is one; None once the stream ended and all were taken."""
        while self._taken >= len(self.frames):
            if self.ending is not None:
                return None
            await self._change()
        self._taken += 1
        self._changed.set()
        return self.frames[self._taken - 1]

    async def wait(self, count: int, *, timeout_s: float = 5) -> list[str]:
        """The first ``count`` frames, once they are here (fewer if the stream ended first)."""
        async with asyncio.timeout(timeout_s):
            while len(self.frames) < count and self.ending is None:
                await self._change()
        return self.frames[:count]

    def _full(self) -> bool:
        return self._capacity is not None and len(self.frames) - self._taken >= self._capacity

    async def _room(self) -> None:
        while self._full() and self.ending is None:
            await self._change()

    async def _change(self) -> None:
        self._changed.clear()
        await self._changed.wait()
