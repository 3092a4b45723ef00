"""Writing a socket's data frames straight to its transport, encoded once for every socket.

A text frame from server to client is unmasked, so its bytes on the wire are the same for every
socket it goes to: ``text_frame`` builds them once per event (the hub offers one ``str`` to all
of a room's sockets, and the last one encoded is kept). ``DirectWriter`` then hands those bytes
to the socket's transport: one ``transport.write`` per delivery, where the ASGI ``send`` of
uvicorn's websockets-sansio implementation re-encoded the text and rebuilt the frame for every
socket. That was most of the CPU a fan-out delivery cost (see docs/performance.md).

This reaches into uvicorn's protocol object, so it is used only where it is known to be right:
the server's ``send`` belongs to ``WebSocketsSansIOProtocol``, the handshake is done, no
extension (compression) was negotiated, and the socket is open and not pushing back. Anything
else (another server, a paused or closing socket) returns False and the caller goes through the
ASGI ``send`` instead, which handles every case.
"""

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

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


class DirectWriter:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, server_send: Any) -> "DirectWriter | None":
        """A writer for the socket whose ASGI ``send`` this is, or None where it would not be right."""
        protocol = getattr(server_send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):  # wsserver.py's is one
            return None
        if not all(hasattr(protocol, name) for name in ("conn", "transport", "writable", "close_sent", "disconnected")):
            return None
        return cls(protocol)

    def write(self, text: str) -> bool:
        """Write ``text`` as one frame now, or say False (nothing written) to go the long way."""
        protocol = self._protocol
        conn = protocol.conn
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or conn.state is not _OPEN
            or conn.extensions
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(text_frame(text))
        return True
