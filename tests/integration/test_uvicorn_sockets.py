"""The uvicorn accelerator (entrypoints/uvicorn_sockets.py) on uvicorn's real websockets protocol
and on its lighter subclass, driven through a real handshake over an in-memory transport: a
socket's frames of one round go out together and in order, never after a close, never for a
compressing or pushing-back socket, one socket's failure stays its own; the lighter protocol
lets go of the handshake and still hears the client; and the accelerator turns itself off, with
one warning, where the uvicorn it finds is not the one it was written for."""

import asyncio
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from convocore.application.ports import Ending
from convocore.entrypoints.sockets import CLOSE_TOO_SLOW, AsgiOutlet
from convocore.entrypoints.uvicorn_sockets import (
    DirectOutlet,
    LightProtocol,
    UvicornWrites,
    check,
    serving_protocol,
    text_frame,
)

HANDSHAKE = (
    b"GET /ws/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
MASKED_CLOSE = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])  # a client's close frame, code 1000


class Transport:
    """What uvicorn's protocol writes, kept; ``broken`` makes every write fail."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("the handle is closed")
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Socket:
    """An accepted socket on uvicorn's protocol: its protocol, transport and the ASGI send the app got."""

    def __init__(self, protocol: WebSocketsSansIOProtocol, transport: Transport, send: Any) -> None:
        self.protocol, self.transport, self.send = protocol, transport, send
        self.handshake_bytes = len(transport.written)

    def frames_written(self) -> list[bytes]:
        return self.transport.written[self.handshake_bytes :]


PROTOCOLS = [LightProtocol, WebSocketsSansIOProtocol]
_protocol_class: list[type[WebSocketsSansIOProtocol]] = [LightProtocol]


_opened: list[WebSocketsSansIOProtocol] = []


@pytest.fixture(params=PROTOCOLS, ids=["light", "uvicorn"], autouse=True)
async def protocol_class(request: pytest.FixtureRequest) -> AsyncIterator[type[WebSocketsSansIOProtocol]]:
    """Every test runs on the accelerator's protocol and on uvicorn's own; its sockets are
    closed afterwards (their apps end)."""
    _protocol_class[0] = request.param
    yield request.param
    while _opened:
        protocol = _opened.pop()
        if not protocol.disconnected:
            protocol.connection_lost(None)
        for task in protocol.tasks:  # an app that stopped reading never hears the disconnect
            task.cancel()
    await asyncio.sleep(0.01)


async def accepted(*, deflate: bool = False, heard: list[Any] | None = None, reads: bool = True) -> Socket:
    sends: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        sends.put_nowait(send)
        if not reads:  # an app that takes no more messages
            await asyncio.Event().wait()
        while (message := await receive())["type"] != "websocket.disconnect":
            if heard is not None:
                heard.append(message)

    config = Config(app=app, ws="websockets-sansio", lifespan="off", ws_per_message_deflate=deflate, log_config=None)
    config.load()
    transport = Transport()
    protocol = _protocol_class[0](config=config, server_state=ServerState(), app_state={})
    _opened.append(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    protocol.data_received(HANDSHAKE + extension + b"\r\n")
    send = await asyncio.wait_for(sends.get(), 5)
    return Socket(protocol, transport, send)


@pytest.fixture
async def writes() -> UvicornWrites:
    started = UvicornWrites(enabled=True)
    await started.start()
    assert started.enabled  # the self-test passed on this machine's uvicorn
    return started


async def test_a_sockets_frames_of_one_round_are_written_together_in_order(writes: UvicornWrites) -> None:
    first, second = await accepted(), await accepted()
    outlets = [direct(writes, first), direct(writes, second)]

    for n in range(3):
        assert outlets[0].send(f'{{"n":{n}}}') is None
    assert outlets[1].send('{"n":9}') is None
    assert first.frames_written() == []  # not yet: at the end of this round of the loop
    await asyncio.sleep(0)
    assert outlets[0].send('{"n":3}') is None  # the next round
    await asyncio.sleep(0)

    assert first.frames_written() == [
        text_frame('{"n":0}') + text_frame('{"n":1}') + text_frame('{"n":2}'),
        text_frame('{"n":3}'),
    ]
    assert second.frames_written() == [text_frame('{"n":9}')]


async def test_the_same_bytes_as_the_asgi_send_and_queued_frames_go_before_the_long_way(writes: UvicornWrites) -> None:
    socket = await accepted()
    outlet = direct(writes, socket)
    assert outlet.send('{"n":1}') is None  # taken for the end of the round
    socket.protocol.pause_writing()  # the client reads slowly: only the ASGI send will do now
    rest = outlet.send('{"n":2}')
    assert rest is not None  # uvicorn's send waits for the socket
    assert socket.frames_written() == [text_frame('{"n":1}')]  # what waited went first
    socket.protocol.resume_writing()
    await rest
    assert socket.frames_written() == [text_frame('{"n":1}'), text_frame('{"n":2}')]  # ASGI's bytes are the same


async def test_a_socket_whose_close_handshake_began_gets_no_frame(writes: UvicornWrites) -> None:
    socket = await accepted()
    outlet = direct(writes, socket)
    assert outlet.send('{"n":1}') is None
    socket.protocol.data_received(MASKED_CLOSE)  # the client closes within the round
    await asyncio.sleep(0)
    assert text_frame('{"n":1}') not in socket.frames_written()  # no data frame after a close
    assert outlet.send('{"n":2}') is None  # the long way now, which writes no data frame either
    assert text_frame('{"n":2}') not in socket.frames_written()


async def test_a_compressing_socket_and_another_server_get_the_plain_outlet(writes: UvicornWrites) -> None:
    compressing = await accepted(deflate=True)
    assert compressing.protocol.conn.extensions  # negotiated in the handshake
    assert isinstance(writes.outlet_for(compressing.send, _no_close), AsgiOutlet)

    async def another_servers_send(message: dict[str, Any]) -> None: ...

    assert isinstance(writes.outlet_for(another_servers_send, _no_close), AsgiOutlet)


async def test_a_socket_that_fails_to_write_does_not_stop_the_others(writes: UvicornWrites) -> None:
    sockets = [await accepted() for _ in range(3)]
    sockets[0].transport.broken = True
    for socket in sockets:
        assert direct(writes, socket).send('{"type":"pong"}') is None
    await asyncio.sleep(0)  # the round's writes: the first raises, the others go on
    for socket in sockets[1:]:
        assert socket.frames_written() == [text_frame('{"type":"pong"}')]


async def test_the_close_goes_after_the_frames_taken(writes: UvicornWrites) -> None:
    socket = await accepted()
    closed: list[tuple[int, str]] = []

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))
        assert socket.frames_written() == [text_frame("last")]

    outlet = writes.outlet_for(socket.send, close)
    assert isinstance(outlet, DirectOutlet)
    outlet.send("last")
    await outlet.close(Ending.TOO_SLOW)
    assert closed == [(CLOSE_TOO_SLOW, Ending.TOO_SLOW.value)]


async def test_switched_off_every_socket_gets_the_plain_outlet() -> None:
    socket = await accepted()
    off = UvicornWrites(enabled=False)
    await off.start()
    assert isinstance(off.outlet_for(socket.send, _no_close), AsgiOutlet)


async def test_another_uvicorn_turns_it_off_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.99.0" if name == "uvicorn" else real(name))
    check.cache_clear()  # the check runs once per process: this test is a process that finds another uvicorn
    try:
        socket = await accepted()
        writes = UvicornWrites(enabled=True)
        with caplog.at_level(logging.WARNING, logger="convocore.ws"):
            await writes.start()
            assert serving_protocol(enabled=True) == "websockets-sansio"
        assert not writes.enabled and isinstance(writes.outlet_for(socket.send, _no_close), AsgiOutlet)
        assert [r.getMessage() for r in caplog.records if r.name == "convocore.ws"] == [
            "the uvicorn accelerator is off, uvicorn's own protocol and ASGI send serve the sockets: "
            "uvicorn 0.99.0 is not the 0.54.x it was written for"
        ]
    finally:
        check.cache_clear()


async def test_the_light_protocol_lets_go_of_the_handshake_and_hears_the_client() -> None:
    heard: list[Any] = []
    socket = await accepted(heard=heard)
    if isinstance(socket.protocol, LightProtocol):
        assert socket.protocol.request is None and socket.protocol.response is None
    for text in ("one", "two"):
        payload = bytes(b ^ m for b, m in zip(text.encode(), b"\x01\x02\x03\x04" * 2, strict=False))
        socket.protocol.data_received(bytes([0x81, 0x80 | len(text)]) + b"\x01\x02\x03\x04" + payload)
        await asyncio.sleep(0)
    assert [m.get("text") for m in heard] == ["one", "two"]


async def test_reading_stops_once_messages_wait_unread() -> None:
    """uvicorn's protocol stops reading at the first message the app has not taken; the light
    one at the second (the app usually waits in receive already): either way, bounded."""
    socket = await accepted(reads=False)
    frames = [bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]) for _ in range(2)]
    socket.protocol.data_received(frames[0])
    assert socket.transport.paused is not isinstance(socket.protocol, LightProtocol)
    socket.protocol.data_received(frames[1])
    assert socket.transport.paused


async def _no_close(code: int, reason: str) -> None: ...


def direct(writes: UvicornWrites, socket: Socket) -> DirectOutlet:
    outlet = writes.outlet_for(socket.send, _no_close)
    assert isinstance(outlet, DirectOutlet)
    return outlet
