"""The socket protocol ``convocore serve`` runs (entrypoints/wsserver.py): the inbox and flag
that stand in for uvicorn's asyncio.Queue and Event behave as uvicorn uses them, and reading
stops only once the app has messages waiting."""

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from convocore.entrypoints.wsserver import WebSocketProtocol, _Flag, _Inbox


async def test_the_inbox_hands_messages_out_in_order_and_waits_when_empty() -> None:
    inbox = _Inbox()
    inbox.put_nowait("first")
    inbox.put_nowait("second")
    assert not inbox.empty()
    assert [await inbox.get(), await inbox.get()] == ["first", "second"]
    assert inbox.empty()

    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait("third")
    assert await asyncio.wait_for(waiting, 1) == "third"


async def test_a_cancelled_reader_leaves_the_inbox_usable() -> None:
    inbox = _Inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    inbox.put_nowait("after")
    assert await asyncio.wait_for(inbox.get(), 1) == "after"


async def test_a_set_flag_is_waited_on_without_suspending() -> None:
    flag = _Flag()
    steps = flag.wait().__await__()
    try:
        steps.send(None)
        raise AssertionError("wait() on a set flag suspended")
    except StopIteration as done:
        assert done.value is True


async def test_a_cleared_flag_holds_every_waiter_until_set() -> None:
    flag = _Flag()
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)

    flag.set()

    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert flag.is_set()


class _Transport(asyncio.Transport):
    """Records what the protocol asks of the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)


def _frame(opcode: Opcode, payload: bytes, *, fin: bool = True, mask: bool = True, rsv1: bool = False) -> bytes:
    frame = Frame(opcode, payload, fin=fin).serialize(mask=mask, extensions=[])
    return bytes([frame[0] | 0x40]) + frame[1:] if rsv1 else frame  # websockets will not build a bad one


def _text(body: str) -> bytes:
    return _frame(Opcode.TEXT, body.encode())


async def _opened(
    protocol_class: type[WebSocketsSansIOProtocol], app: Any, **config: Any
) -> tuple[WebSocketsSansIOProtocol, _Transport, bytes]:
    """A socket of ``protocol_class`` serving ``app`` on a recording transport, past its
    handshake: the protocol, the transport, and the handshake's response."""
    loaded = Config(app=app, ws=protocol_class, ws_ping_interval=None, **config)
    loaded.load()
    protocol = protocol_class(config=loaded, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"GET /ws/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(10):
        await asyncio.sleep(0)
    handshake = bytes(transport.written)
    assert handshake.startswith(b"HTTP/1.1 101"), handshake
    return protocol, transport, handshake


async def test_reading_stops_only_once_a_second_message_waits_for_the_app() -> None:
    """uvicorn stops reading at every message received and starts again when the app takes it;
    here a message the app is waiting for is taken with reading left on (two epoll changes a
    message fewer, lever 44), and reading stops once two wait, starting again when they are taken."""
    received: list[str] = []
    reading = asyncio.Event()  # set: the app is to read what has come, then wait for more
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            await reading.wait()
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            received.append(message["text"])
            done.set()

    protocol, transport, _ = await _opened(WebSocketProtocol, app, log_level="warning")

    reading.set()
    await asyncio.sleep(0)  # the app waits in receive
    protocol.data_received(_text("one"))
    await asyncio.wait_for(done.wait(), 1)
    assert received == ["one"]
    assert transport.calls == []  # taken with reading left on

    reading.clear()
    for _ in range(3):
        await asyncio.sleep(0)  # the app is busy: it does not read
    protocol.data_received(_text("two"))
    assert transport.calls == []  # one waiting: still reading
    protocol.data_received(_text("three"))
    assert transport.calls == ["pause"]  # two waiting: reading stops

    done.clear()
    reading.set()
    while len(received) < 3:
        await asyncio.wait_for(done.wait(), 1)
        done.clear()
    assert received == ["one", "two", "three"]
    assert transport.calls == ["pause", "resume"]  # both taken: reading again
    reading.clear()
    protocol.connection_lost(None)


async def _serve(
    protocol_class: type[WebSocketsSansIOProtocol], reads: list[bytes]
) -> tuple[list[Any], bytes, bool, int]:
    """``reads`` through a socket of ``protocol_class``, one read at a time, the app taking
    each message as it comes: what the app received, what the server wrote after its
    handshake, whether it closed the socket, and how many reads went through websockets' parser."""
    received: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append({k: v for k, v in message.items() if k != "code"} | {"code": message.get("code")})
            if message["type"] == "websocket.disconnect":
                return

    protocol, transport, handshake = await _opened(protocol_class, app, ws_max_size=1000, log_level="critical")
    parsed = 0
    feed = protocol.conn.receive_data

    def counted(data: bytes | bytearray) -> None:
        nonlocal parsed
        parsed += 1
        feed(data)

    protocol.conn.receive_data = counted  # type: ignore[method-assign]
    for data in reads:
        if transport.closing:
            break
        protocol.data_received(data)
        for _ in range(5):
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    return received, bytes(transport.written[len(handshake) :]), transport.closing, parsed


async def test_a_read_of_one_whole_text_frame_skips_the_frame_parser() -> None:
    """Lever 45: one whole final masked text frame in a read, as a client's message comes, is
    handed to the app without websockets' parser; a frame that comes in pieces still goes
    through it, and both reach the app as uvicorn's own protocol hands them on."""
    short, medium = _frame(Opcode.TEXT, "héllo".encode()), _frame(Opcode.TEXT, b"x" * 300)
    split = _frame(Opcode.TEXT, b"split in two")
    reads = [short, medium, split[:5], split[5:]]

    received, written, closing, parsed = await _serve(WebSocketProtocol, reads)

    assert parsed == 2  # only the two pieces of the split frame
    assert [m.get("text") for m in received[:3]] == ["héllo", "x" * 300, "split in two"]
    assert (received, written, closing) == (await _serve(WebSocketsSansIOProtocol, reads))[:3]


_SECOND, _LATER = _frame(Opcode.TEXT, b"second"), _frame(Opcode.TEXT, b"later")  # one mask each, cut below
_ODD_READS = {
    "fragmented": [_frame(Opcode.TEXT, b"frag", fin=False), _frame(Opcode.CONT, b"ment")],
    "a whole frame in a fragmented message": [
        _frame(Opcode.TEXT, b"one", fin=False),
        _frame(Opcode.TEXT, b"not a continuation"),
    ],
    "two frames in one read": [_frame(Opcode.TEXT, b"a") + _frame(Opcode.TEXT, b"b")],
    "a frame and part of the next": [_frame(Opcode.TEXT, b"first") + _SECOND[:3], _SECOND[3:]],
    "the header alone, then the payload": [_LATER[:6], _LATER[6:], _frame(Opcode.TEXT, b"after")],
    "a header, then a payload that is itself a whole frame": [  # a zero mask leaves the payload as sent
        bytes([0x81, 0x80 | len(_LATER)]) + bytes(4),
        _LATER,
    ],
    "a 64-bit length": [_frame(Opcode.TEXT, b"x" * 200)[:2] + b"\x7f" + (200).to_bytes(8, "big")],
    "unmasked": [_frame(Opcode.TEXT, b"bare", mask=False), _frame(Opcode.TEXT, b"after")],
    "not UTF-8": [_frame(Opcode.TEXT, b"\xff\xfe"), _frame(Opcode.TEXT, b"after")],
    "over the size limit": [_frame(Opcode.TEXT, b"x" * 1001), _frame(Opcode.TEXT, b"after")],
    "at the size limit": [_frame(Opcode.TEXT, b"x" * 1000)],
    "a reserved bit": [_frame(Opcode.TEXT, b"rsv", rsv1=True), _frame(Opcode.TEXT, b"after")],
    "binary": [_frame(Opcode.BINARY, b"\x00\x01")],
    "a ping": [_frame(Opcode.PING, b"p"), _frame(Opcode.TEXT, b"after")],
    "a close, then text": [_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")), _frame(Opcode.TEXT, b"after close")],
    "an empty text frame": [_frame(Opcode.TEXT, b"")],
}


@pytest.mark.parametrize("reads", list(_ODD_READS.values()), ids=list(_ODD_READS))
async def test_every_other_read_is_answered_as_uvicorns_protocol_answers_it(reads: list[bytes]) -> None:
    assert (await _serve(WebSocketProtocol, reads))[:3] == (await _serve(WebSocketsSansIOProtocol, reads))[:3]
