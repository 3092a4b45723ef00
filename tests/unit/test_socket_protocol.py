"""The socket protocol ``convocore serve`` runs (entrypoints/wsserver.py): the inbox and flag
that stand in for uvicorn's asyncio.Queue and Event behave as uvicorn uses them, and reading
stops only once the app has messages waiting."""

import asyncio
from typing import Any

from uvicorn.config import Config
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


def _text(body: str) -> bytes:
    return Frame(Opcode.TEXT, body.encode()).serialize(mask=True, extensions=[])


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

    config = Config(app=app, ws=WebSocketProtocol, ws_ping_interval=None, log_level="warning")
    config.load()
    protocol = WebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"GET /ws/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(10):
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 101"), bytes(transport.written)

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
