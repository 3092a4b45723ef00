"""Writing a socket's data frames straight to its transport, encoded once for every socket.

A text frame from server to client is unmasked, so its bytes on the wire are the same for every
socket it goes to: ``text_frame`` builds them once per event (the hub offers one ``str`` to all
of a room's sockets, and the last one encoded is kept). ``DirectWriter`` then hands those bytes
to the socket's transport: one ``transport.write`` per delivery, where the ASGI ``send`` of
uvicorn's websockets-sansio implementation re-encoded the text and rebuilt the frame for every
socket. That was most of the CPU a fan-out delivery cost (see docs/performance.md).

This reaches into uvicorn's protocol object, so it is used only where it is known to be right:
the server's ``send`` belongs to ``WebSocketsSansIOProtocol``, the handshake is done, no
extension (compression) was negotiated, and the socket is open and not pushing back. Another
server or a compressing socket gets no writer, and a paused or closing one's ``write`` says
False; either way the caller goes through the ASGI ``send`` instead, which handles every case.

A socket's frames are gathered for the rest of the event loop's current round of work and
written together once it is over (``call_soon``): one ``transport.write``, one ``send()`` and
one TCP segment for all the frames a socket got in that round, where each frame cost one of
each, and on loopback a segment's cost includes the receiving side's (docs/performance.md,
lever 28). A post's ack and its own delivery to the sender's socket always share a round; under
load, so do the deliveries of several messages to one room. Frames wait microseconds, never
for a timer; whatever goes the long way first writes what waits, so the order holds.
"""

import asyncio
import logging
import struct
import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

log = logging.getLogger("convocore.ws")
_OPEN = State.OPEN
_last: tuple[str, bytes] = ("", b"\x81\x00")


def text_frame(text: str) -> bytes:
    """The complete wire bytes of one unfragmented, unmasked text frame carrying ``text``."""
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
    """The writers of one event loop with frames waiting, written out once the loop's current
    round of callbacks is done."""

    __slots__ = ("_loop", "_writers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._writers: list[DirectWriter] = []

    def add(self, writer: "DirectWriter") -> None:
        if not self._writers:
            self._loop.call_soon(self._flush)
        self._writers.append(writer)

    def _flush(self) -> None:
        writers, self._writers = self._writers, []
        for writer in writers:
            try:
                writer.flush()
            except Exception as error:  # one socket's failure stays its own (the reader sees it too)
                log.debug("socket write failed: %r", error)


_rounds: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Round]" = weakref.WeakKeyDictionary()


def _round() -> _Round:
    loop = asyncio.get_running_loop()
    found = _rounds.get(loop)
    if found is None:
        found = _rounds[loop] = _Round(loop)
    return found


class DirectWriter:
    __slots__ = ("_out", "_protocol", "_round")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._out: list[bytes] | None = None  # frames waiting for the end of the round
        self._round: _Round | None = None

    @classmethod
    def of(cls, server_send: Any) -> "DirectWriter | None":
        """A writer for the socket whose ASGI ``send`` this is, or None where it would not be right.
        Only once the socket is accepted: the handshake settles its extensions for good."""
        protocol = getattr(server_send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):  # wsserver.py's is one
            return None
        if not all(hasattr(protocol, name) for name in ("conn", "transport", "writable", "close_sent", "disconnected")):
            return None
        if protocol.conn.extensions:  # negotiated in the handshake, which is over: fixed for the socket
            return None
        return cls(protocol)

    def write(self, text: str) -> bool:
        """Take ``text`` as one frame, written at the end of this round of the loop, or say
        False (nothing taken) to go the long way.

        The close handshake's state (websockets' ``conn.state``, a property: a Python call
        per delivery) is left to ``flush``, which writes nothing once it is not OPEN. uvicorn's
        protocol leaves OPEN only by sending a close (``close_sent``) or by answering the
        peer's and closing the transport, both checked here; a frame taken in between is
        dropped, as the long way would have refused it."""
        protocol = self._protocol
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        last = _last  # text_frame's own first step, without the call: a room's sockets share one event
        data = last[1] if last[0] is text else text_frame(text)
        out = self._out
        if out is None:
            self._out = [data]
            if self._round is None:
                self._round = _round()
            self._round.add(self)
        else:
            out.append(data)
        return True

    def flush(self) -> None:
        """Write what waits, now. A socket that began closing since gets none of it: no data
        frame may follow a close frame (an offer now would not be written either)."""
        out, self._out = self._out, None
        if not out:
            return
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or protocol.conn.state is not _OPEN:
            return
        transport = protocol.transport
        if not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
