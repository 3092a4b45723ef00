"""This process's live sockets: fan-out of committed events, one encode per event.

Each socket has a bounded queue drained by its own writer task, so a slow reader never
holds up delivery to anyone else; one whose queue overflows is closed and may resume.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from convocore.domain.events import Event, MemberLeft
from convocore.entrypoints.frames import encode, event_frame

log = logging.getLogger("convocore.ws")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Connection:
    __slots__ = ("_close", "_closing", "_queue", "_send", "user_id")

    def __init__(self, *, send: Send, user_id: str, queue_size: int) -> None:
        self.user_id = user_id
        self._send = send
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self._closing = asyncio.Event()
        self._close: tuple[int, str] | None = None

    def offer(self, frame: str) -> None:
        if self._close is not None:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CLOSE_TOO_SLOW, "send queue overflowed; reconnect and resume")

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._closing.set()

    async def serve(self, reader: Awaitable[None]) -> None:
        """Run the reader and the writer until the client leaves or a close is asked for."""
        tasks = [
            asyncio.ensure_future(reader),
            asyncio.ensure_future(self._write()),
            asyncio.ensure_future(self._closing.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception) and not _is_disconnect(outcome):
                    log.warning("socket task failed: %r", outcome)
        if self._close is not None:
            code, reason = self._close
            try:
                if code != CLOSE_TOO_SLOW:  # say why before closing, as far as the client reads
                    await asyncio.wait_for(self._flush(), timeout=1)
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # the client may already be gone; nothing is lost by not telling it
                log.debug("close after disconnect", exc_info=True)

    async def _flush(self) -> None:
        while not self._queue.empty():
            await self._send({"type": "websocket.send", "text": self._queue.get_nowait()})

    async def _write(self) -> None:
        while True:
            frame = await self._queue.get()
            await self._send({"type": "websocket.send", "text": frame})


def _is_disconnect(error: BaseException) -> bool:
    return type(error).__name__ in {"WebSocketDisconnect", "ClientDisconnected"} or isinstance(error, OSError)


class Hub:
    def __init__(self) -> None:
        self._rooms: dict[str, set[Connection]] = {}

    def attach(self, conversation_id: str, connection: Connection) -> None:
        self._rooms.setdefault(conversation_id, set()).add(connection)

    def detach(self, conversation_id: str, connection: Connection) -> None:
        room = self._rooms.get(conversation_id)
        if room is not None:
            room.discard(connection)
            if not room:
                del self._rooms[conversation_id]

    def socket_count(self) -> int:
        return sum(len(room) for room in self._rooms.values())

    def dispatch(self, event: Event) -> None:
        room = self._rooms.get(event.conversation_id)
        if not room:
            return
        frame = encode(event_frame(event))
        for connection in tuple(room):
            connection.offer(frame)
        if isinstance(event, MemberLeft):  # a removed member gets nothing more from here on
            for connection in tuple(room):
                if connection.user_id == event.user_id:
                    connection.close(CLOSE_FORBIDDEN, "no longer a member")
                    self.detach(event.conversation_id, connection)
