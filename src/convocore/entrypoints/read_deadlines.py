"""Deadlines for reading HTTP requests, so a slow or stuck client cannot hold a connection open.

uvicorn closes a connection that stays idle between requests (``timeout_keep_alive``) but sets no
deadline while a request is being read: a client that sends a request head a byte every few
seconds (a slowloris), or a body that never ends, holds its connection and file descriptor for as
long as it likes. ``ReadDeadlines`` wraps the HTTP protocol uvicorn would use and watches only the
framing of what arrives, the way Apache's mod_reqtimeout does:

- a request head must be complete within ``header_s`` of its first byte (of the connection being
  made, for the first request);
- a body must arrive within ``body_s`` of its head, extended by one second for every
  ``min_rate`` bytes received, so a large body at a reasonable rate is never cut off.

A connection past either deadline is aborted. A WebSocket leaves the wrapper when uvicorn hands
the transport to its WebSocket protocol after the handshake (pings bound it from then on). The
bytes themselves are parsed by uvicorn's protocol, untouched; this only finds where heads and
bodies end (Content-Length or chunked framing), cheaply: one ``find`` per received chunk."""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, cast

log = logging.getLogger("convocore.http")

HEAD_LIMIT = 64 * 1024  # past this the wrapped protocol refuses the head itself; stop tracking


@dataclass(frozen=True, slots=True)
class Deadlines:
    header_s: float = 20.0
    body_s: float = 20.0
    min_rate: int = 500  # bytes per second that extend the body deadline by a second


class Framing:
    """Where HTTP/1.1 request heads and bodies end in a byte stream, fed as it arrives."""

    __slots__ = ("_buffer", "_remaining", "_state", "head_bytes")

    HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILER, LOST = range(6)

    def __init__(self) -> None:
        self._state = Framing.HEAD
        self._buffer = bytearray()
        self._remaining = 0
        self.head_bytes = 0  # bytes of the head being read (0: between requests)

    @property
    def in_head(self) -> bool:
        return self._state == Framing.HEAD

    @property
    def lost(self) -> bool:
        return self._state == Framing.LOST

    def stop(self) -> None:
        """Watch nothing more on this stream (it is no longer HTTP, or no longer parseable)."""
        self._state = Framing.LOST
        self._buffer.clear()

    def feed(self, data: bytes) -> list[tuple[str, int]]:
        """Consume ``data``; return what happened, in order: ("head", 0) a head completed with a
        body to come, ("body", n) n bytes of body arrived, ("done", 0) a request ended."""
        events: list[tuple[str, int]] = []
        view = memoryview(data)
        while view and self._state != Framing.LOST:
            view = self._step(view, events)
        return events

    def _step(self, view: memoryview, events: list[tuple[str, int]]) -> memoryview:
        state = self._state
        if state == Framing.HEAD:
            start = max(0, len(self._buffer) - 3)
            self._buffer += view
            self.head_bytes = len(self._buffer)
            end = self._buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(self._buffer) > HEAD_LIMIT:
                    self._state = Framing.LOST
                return view[len(view) :]
            rest = len(self._buffer) - (end + 4)
            head = bytes(self._buffer[:end])
            self._buffer.clear()
            self.head_bytes = 0
            self._begin_body(head, events)
            return view[len(view) - rest :]
        if state == Framing.BODY or state == Framing.CHUNK_DATA:
            used = min(self._remaining, len(view))
            self._remaining -= used
            events.append(("body", used))
            if self._remaining == 0:
                if state == Framing.BODY:
                    self._state = Framing.HEAD
                    events.append(("done", 0))
                else:
                    self._state = Framing.CHUNK_SIZE
            return view[used:]
        # CHUNK_SIZE and TRAILER read lines.
        start = max(0, len(self._buffer) - 1)
        self._buffer += view
        end = self._buffer.find(b"\r\n", start)
        if end < 0:
            if len(self._buffer) > HEAD_LIMIT:
                self._state = Framing.LOST
            return view[len(view) :]
        rest = len(self._buffer) - (end + 2)
        line = bytes(self._buffer[:end])
        self._buffer.clear()
        if state == Framing.CHUNK_SIZE:
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._state = Framing.LOST  # the wrapped protocol answers the malformed body
                return view[len(view) :]
            if size == 0:
                self._state = Framing.TRAILER
            else:
                self._state = Framing.CHUNK_DATA
                self._remaining = size + 2  # the chunk and its CRLF
        elif line == b"":  # the empty line that ends the trailer section
            self._state = Framing.HEAD
            events.append(("done", 0))
        return view[len(view) - rest :]

    def _begin_body(self, head: bytes, events: list[tuple[str, int]]) -> None:
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._state = Framing.LOST
                    return
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            self._state = Framing.CHUNK_SIZE
            events.append(("head", 0))
        elif length > 0:
            self._state = Framing.BODY
            self._remaining = length
            events.append(("head", 0))
        else:
            events.append(("done", 0))


class ReadDeadlines(asyncio.Protocol):
    """An ``asyncio.Protocol`` in front of uvicorn's HTTP protocol, for ``uvicorn.run(http=...)``:
    build the class with ``ReadDeadlines.around(protocol_class, deadlines)``."""

    inner_class: ClassVar[type[asyncio.Protocol]]
    deadlines: ClassVar[Deadlines]

    @classmethod
    def around(cls, inner_class: type[asyncio.Protocol], deadlines: Deadlines) -> type["ReadDeadlines"]:
        return type("ReadDeadlines", (cls,), {"inner_class": inner_class, "deadlines": deadlines})

    def __init__(self, **kwargs: Any) -> None:
        # uvicorn builds its protocol with keywords (config, server_state, app_state, _loop).
        self.inner = self.inner_class(**kwargs)
        self.framing = Framing()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.phase = "head"

    # -- asyncio.Protocol, forwarded ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.inner.connection_made(transport)
        self.start_deadline("head", self.deadlines.header_s)

    def data_received(self, data: bytes) -> None:
        framing = self.framing
        if not framing.lost:
            for event, size in framing.feed(data):
                if event == "head":
                    self.start_deadline("body", self.deadlines.body_s)
                elif event == "body":
                    self.deadline += size / self.deadlines.min_rate
                else:
                    self.stop_deadline()
            if framing.in_head and framing.head_bytes and self.timer is None:
                self.start_deadline("head", self.deadlines.header_s)  # the next request's head has begun
        self.inner.data_received(data)
        transport = self.transport
        if transport is not None and transport.get_protocol() is not self:
            # Upgraded: the WebSocket protocol reads from here on (anything after the
            # handshake in this chunk was its, not a request head).
            self.stop_deadline()
            framing.stop()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_deadline()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- the deadline ------------------------------------------------------------------------

    def start_deadline(self, phase: str, seconds: float) -> None:
        self.stop_deadline()
        loop = asyncio.get_running_loop()
        self.phase = phase
        self.deadline = loop.time() + seconds
        self.timer = loop.call_at(self.deadline, self.deadline_passed)

    def stop_deadline(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def deadline_passed(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:  # body bytes moved it on since it was set
            self.timer = loop.call_at(self.deadline, self.deadline_passed)
            return
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"
        log.info("closing the connection from %s: request %s not received in time", where, self.phase)
        transport.abort()
