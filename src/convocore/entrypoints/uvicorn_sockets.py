"""Accelerator: uvicorn's WebSocket protocol, lighter per idle socket and writing frames
straight to the transport, once per event.

- **Frames.** A text frame from server to client is unmasked, so its bytes are the same for
  every socket it goes to: ``text_frame`` builds them once per event (the engine offers one
  ``str`` to a whole room, and the last one built is kept). ``DirectOutlet`` hands them to the
  socket's transport and gathers a socket's frames until the event loop's current round is
  over, then writes them in one ``transport.write``. Through the ASGI ``send``, uvicorn's
  protocol re-encodes the text and rebuilds the frame for every socket, one write each.
- **Idle sockets.** ``LightProtocol`` (``uvicorn.run(ws=...)``) keeps what uvicorn's own keeps,
  less: a small inbox and flag in place of an ``asyncio.Queue`` and ``Event`` (five deques), and
  the handshake's request and response let go once the socket is accepted; and it stops reading
  a socket only once two messages wait for the app, not at every one.

It reaches into uvicorn's protocol object (not a public API), so it is held to what it needs:

- pinned to the uvicorn and websockets releases CI tests (``PINNED``);
- checked before it is used (``check``, once per process): the versions, and a real handshake
  and frame through ``LightProtocol`` on an in-memory transport, compared with the ASGI
  ``send``'s bytes; otherwise one warning line, uvicorn's own protocol, and every frame through
  the ASGI ``send``;
- used per socket only where it is right: uvicorn's protocol, the handshake done, no extension
  (compression) negotiated, the socket open and not pushing back; anything else goes the ASGI way;
- switchable off (``CONVOCORE_ACCELERATE=0``), and CI runs the whole suite both ways.
"""

import asyncio
import importlib.metadata
import logging
import struct
import weakref
from collections.abc import Awaitable
from functools import cache
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State

from convocore.application.ports import Ending
from convocore.entrypoints.sockets import AsgiOutlet, Close, Send

log = logging.getLogger("convocore.ws")

PINNED = {"uvicorn": "0.54.", "websockets": "17."}  # the releases it was written for
_last: tuple[str, bytes] = ("", b"\x81\x00")


def text_frame(text: str) -> bytes:
    """The wire bytes of one unfragmented, unmasked text frame carrying ``text`` (RFC 6455 5.2)."""
    global _last
    if _last[0] is text:
        return _last[1]
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    data = header + payload
    _last = (text, data)
    return data


class _Round:
    """The writers of one event loop with frames waiting, written once the round is done."""

    __slots__ = ("_loop", "_writers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writers: list[DirectOutlet] = []

    def add(self, writer: "DirectOutlet") -> None:
        if not self._writers:
            self._loop.call_soon(self._flush)
        self._writers.append(writer)

    def _flush(self) -> None:
        writers, self._writers = self._writers, []
        for writer in writers:
            try:
                writer.flush()
            except Exception as error:  # one socket's failure stays its own (its reader sees it too)
                log.debug("socket write failed: %r", error)


_rounds: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Round]" = weakref.WeakKeyDictionary()


def _round() -> _Round:
    loop = asyncio.get_running_loop()
    found = _rounds.get(loop)
    if found is None:
        found = _rounds[loop] = _Round(loop)
    return found


class DirectOutlet:
    """A socket's ``Outlet`` that writes frames straight to uvicorn's transport, a round's
    frames in one write; anything it may not write (the socket pushing back or closing) goes
    the ASGI way (``fallback``), after what waits."""

    __slots__ = ("_fallback", "_out", "_protocol", "_round")

    def __init__(self, protocol: Any, fallback: AsgiOutlet) -> None:
        self._protocol, self._fallback = protocol, fallback
        self._out: list[bytes] | None = None  # frames waiting for the end of the round
        self._round: _Round | None = None

    def send(self, frame: str) -> Awaitable[None] | None:
        # The close handshake's state is left to ``flush``, which writes nothing once it is not OPEN.
        protocol = self._protocol
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            self.flush()  # what waits goes first
            return self._fallback.send(frame)
        last = _last  # text_frame's own first step, without the call: a room's sockets share one event
        data = last[1] if last[0] is frame else text_frame(frame)
        out = self._out
        if out is None:
            self._out = [data]
            if self._round is None:
                self._round = _round()
            self._round.add(self)
        else:
            out.append(data)
        return None

    async def close(self, ending: Ending) -> None:
        self.flush()  # frames taken this round go before the close
        await self._fallback.close(ending)

    def flush(self) -> None:
        """Write what waits, now. A socket that began closing since gets none of it: no data
        frame may follow a close frame."""
        out, self._out = self._out, None
        if not out:
            return
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or protocol.conn.state is not State.OPEN:
            return
        transport = protocol.transport
        if not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn uses (``put_nowait``, ``get``, ``empty``), for its
    one reader, the app's ``receive``; it holds a message or two (uvicorn stops reading until
    the app takes one)."""

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
        return self._items.pop(0)


class _Flag:
    """The part of ``asyncio.Event`` uvicorn uses for "the transport takes writes" (``set``,
    ``clear``, ``wait``, ``is_set``); set nearly always, so it holds no waiters until one waits.
    ``wait`` on a set flag finishes without suspending, as the event's does."""

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


class LightProtocol(WebSocketsSansIOProtocol):
    """``uvicorn.run(..., ws=LightProtocol)``: uvicorn's websockets-sansio protocol (its default),
    holding less per socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def send_receive_event_to_app(self) -> None:
        # uvicorn stops reading a socket at every message it hands the app and starts again once
        # the app takes it: two changes of the socket's registration with the event loop per
        # message, even when the app already waits in ``receive``. Here reading stops only once a
        # second message waits; what a socket holds unread stays bounded (two messages).
        if self.read_paused or not self.queue.empty():
            super().send_receive_event_to_app()  # a message already waits: uvicorn's own rule
            return
        self.read_paused = True  # so uvicorn's method leaves reading on for this one
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False

    def start_keepalive(self) -> None:
        # Called once the handshake's response is written: the request and response (and their
        # headers) are not needed after it; the app has the scope. websockets' parser keeps the
        # request (a local of its generator) for the socket's life, so its headers are emptied.
        self.request.headers.clear()
        self.request = self.response = None  # type: ignore[assignment]
        super().start_keepalive()


def serving_protocol(*, enabled: bool) -> type[WebSocketsSansIOProtocol] | str:
    """What ``convocore serve`` hands ``uvicorn.run(ws=...)``: ``LightProtocol`` where the
    accelerator is on and its check passes, else uvicorn's own protocol, by name."""
    return LightProtocol if enabled and check() is None else "websockets-sansio"


class UvicornWrites:
    """The accelerator's switch for frames: ``outlet_for`` gives a socket a ``DirectOutlet``
    where it may, else the plain ``AsgiOutlet``."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    async def start(self) -> None:
        if self.enabled and await asyncio.to_thread(check) is not None:
            self.enabled = False

    async def stop(self) -> None:
        return None

    def outlet_for(self, server_send: Send, close: Close) -> DirectOutlet | AsgiOutlet:
        """The outlet of the socket whose ASGI ``send`` (the server's own) this is, once it is
        accepted (the handshake settles its extensions for good)."""
        plain = AsgiOutlet(send=server_send, close=close)
        if not self.enabled:
            return plain
        protocol = getattr(server_send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol) or protocol.conn.extensions:
            return plain
        return DirectOutlet(protocol, plain)


@cache
def check() -> str | None:
    """None if the accelerator may be used in this process, else why not (said once, as a warning)."""
    why = _unpinned() or asyncio.run(_self_test())
    if why is not None:
        log.warning("the uvicorn accelerator is off, uvicorn's own protocol and ASGI send serve the sockets: %s", why)
    return why


def _unpinned() -> str | None:
    for package, release in PINNED.items():
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"{package} is not installed"
        if not found.startswith(release):
            return f"{package} {found} is not the {release}x it was written for"
    return None


async def _self_test() -> str | None:
    """A handshake and one frame through ``LightProtocol`` on an in-memory transport: the bytes
    ``DirectOutlet`` writes must be the frame the ASGI ``send`` writes."""
    try:
        return await asyncio.wait_for(_handshake_and_frame(), timeout=5)
    except Exception as error:  # whatever moved: uvicorn's own ways it is
        return f"the self-test failed: {error!r}"


async def _handshake_and_frame() -> str | None:
    accepted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set_result(send)
        await receive()

    config = Config(app=app, ws="websockets-sansio", lifespan="off", ws_per_message_deflate=False, log_config=None)
    config.load()
    transport = _Transport()
    protocol = LightProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)  # type: ignore[arg-type]
    try:
        protocol.data_received(_HANDSHAKE)
        send = await accepted
        if getattr(send, "__self__", None) is not protocol or protocol.conn.extensions or protocol.request is not None:
            return "uvicorn's protocol has moved"
        shaken = len(transport.written)
        direct = DirectOutlet(protocol, AsgiOutlet(send=send, close=_no_close))
        if direct.send("convocore") is not None:
            return "uvicorn's protocol has moved"
        direct.flush()
        direct_bytes = bytes(transport.written[shaken:])
        await send({"type": "websocket.send", "text": "convocore"})
        asgi_bytes = bytes(transport.written[shaken + len(direct_bytes) :])
        if direct_bytes != asgi_bytes or direct_bytes != text_frame("convocore"):
            return "its frames differ from the ASGI send's"
        return None
    finally:
        protocol.connection_lost(None)


async def _no_close(code: int, reason: str) -> None:
    return None


_HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _Transport:
    """Just enough of an asyncio transport for the self-test: it keeps what is written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self._closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
