"""uvicorn's WebSocket protocol (websockets' sans-I/O one), lighter per idle socket.

Each socket keeps one of these for its whole life, so what it holds while idle is most of what
an idle socket costs. uvicorn's own keeps, beyond the socket's state, an ``asyncio.Queue`` for
received messages and an ``asyncio.Event`` for back-pressure (five deques between them, about
4 KiB, though the queue has one reader and rarely holds more than a message), and the opening
handshake's request and response with all their headers long after the handshake is over.
This keeps the same behaviour with a small inbox and flag in their place, and lets go of the
handshake's headers once the socket is accepted. One change of behaviour: it stops reading a
socket once two received messages wait for the app, where uvicorn's stops at every one.

It also takes the usual read, one whole text frame from the client, without websockets' frame
parser, and hands it on as the parser would have (``data_received``); any other read goes
through the parser. ``tests/unit/test_socket_protocol.py`` holds both to uvicorn's own protocol.
"""

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import OPEN, Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:  # websockets' own unmasking, as its parser picks it: the C speedup where it was built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

# Where websockets' parser is suspended between two frames: the server's parser (not
# ``discard``, which replaces it once a close is under way), past the handshake, in the frame
# loop, waiting in ``at_eof`` for the next frame's first byte with nothing buffered.
_PARSER = (ServerProtocol.parse.__code__, Protocol.parse.__code__, StreamReader.at_eof.__code__)
_FIN_TEXT, _MASKED = 0x81, 0x80


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

    def data_received(self, data: bytes) -> None:
        # A read that holds exactly one whole text frame, final and masked, as a client's
        # message nearly always comes, is taken here; anything else (control frames, fragments,
        # a frame split over reads or several in one, a 64-bit length, anything websockets
        # would refuse) goes through websockets' parser as before. What it saves per message
        # received: the parser's generators, the Frame and Opcode built, and uvicorn's event
        # dispatch (docs/performance.md, lever 45). The frame goes on as uvicorn's own
        # ``handle_text`` hands it on: same checks, same decoding, same reading rule.
        payload = self._whole_text_frame(data)
        if payload is None:
            super().data_received(data)
            return
        self.curr_msg_data_type = "text"
        self.frames = [payload]
        self.send_receive_event_to_app()

    def _whole_text_frame(self, data: bytes) -> bytes | None:
        """The unmasked payload if ``data`` is one whole final masked text frame that
        websockets would accept as it stands, and its parser waits between frames."""
        size = len(data)
        if size < 6 or data[0] != _FIN_TEXT:  # FIN, no RSV bits (no extensions), opcode TEXT
            return None
        length = data[1] ^ _MASKED  # >= 128 when the mask bit is not set: not taken here
        if length < 126:
            start = 6
        elif length == 126 and size >= 8:
            length, start = (data[2] << 8) | data[3], 8
        else:
            return None
        conn = self.conn
        if size != start + length or conn.state is not OPEN or conn.current_size is not None or conn.debug:
            return None
        limit = conn.max_message_size
        if (limit is not None and length > limit) or conn.max_fragment_size is not None or conn.extensions:
            return None
        parser: Any = conn.parser
        for code in _PARSER:
            if getattr(parser, "gi_code", None) is not code:
                return None
            parser = parser.gi_yieldfrom
        return apply_mask(data[start:], data[start - 4 : start])

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
