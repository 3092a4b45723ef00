"""uvicorn's WebSocket protocol (websockets' sans-I/O one), lighter per idle socket.

Each socket keeps one of these for its whole life, so what it holds while idle is most of what
an idle socket costs. uvicorn's own keeps, beyond the socket's state, an ``asyncio.Queue`` for
received messages and an ``asyncio.Event`` for back-pressure (five deques between them, about
4 KiB, though the queue has one reader and rarely holds more than a message), and the opening
handshake's request and response with all their headers long after the handshake is over.
This keeps the same behaviour with a small inbox and flag in their place, and lets go of the
handshake's headers once the socket is accepted. One change of behaviour: it stops reading a
socket once two received messages wait for the app, where uvicorn's stops at every one.
"""

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn uses (``put_nowait``, ``get``, ``empty``), for
    its one reader: the app's ``receive``."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)  # a message or two at most: uvicorn stops reading until it is taken


class _Flag:
    """The part of ``asyncio.Event`` uvicorn uses for "the transport takes writes" (``set``,
    ``clear``, ``wait``); set nearly always, so it holds no list of waiters until one waits.
    ``wait`` on a set flag finishes without suspending, as the event's does (hub.Connection
    counts on that)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """``uvicorn.run(..., ws=WebSocketProtocol)``: uvicorn's websockets-sansio protocol (its
    default), holding less per socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def send_receive_event_to_app(self) -> None:
        # uvicorn's stops reading at every message it queues; here only once a second message
        # waits for the app. A reader waiting in ``receive`` (the usual case) takes the first at
        # once, and stopping and restarting reads cost two changes of the socket's epoll
        # registration per message received (docs/performance.md, lever 44). What a socket can
        # hold unread stays bounded: two messages, and what the read that brought them held.
        if self.read_paused or not self.queue.empty():
            super().send_receive_event_to_app()  # a message already waits: uvicorn's own rule
            return
        # None waits: uvicorn's method queues this one and skips stopping reads that it is told
        # are stopped already; they are not, and stay on.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False

    def start_keepalive(self) -> None:
        # Called once the handshake's response is written: the request and response (and
        # their headers) are not needed after it; the app has the scope, with the headers.
        # websockets' parser keeps the request (a local of its generator) for the socket's
        # life but never reads it again, so its headers are emptied rather than just dropped.
        self.request.headers.clear()
        self.request = self.response = None  # type: ignore[assignment]
        super().start_keepalive()
