"""A real `convocore serve` closes connections that send a request too slowly (a slowloris of
200 connections among them) while answering everyone else, never cuts off a body sent at a
reasonable rate or a WebSocket, and answers 503 past its connection cap."""

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.remote import Remote, next_frame, ready
from tests.support.server import ServerProcess

# Deadlines of a second, so the test waits seconds; 1,000 bytes/s extends a body's deadline.
DEADLINES = {
    "CONVOCORE_HTTP_HEADER_TIMEOUT_S": "1",
    "CONVOCORE_HTTP_BODY_TIMEOUT_S": "1",
    "CONVOCORE_HTTP_BODY_MIN_RATE": "1000",
}
CLOSED_WITHIN = 15.0  # seconds: far past the deadline, for a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("deadlines")
    process = ServerProcess("--memory", env=DEADLINES, cwd=tmp).start()
    yield process
    process.stop()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes (EOF or reset); False if it is still open after CLOSED_WITHIN."""
    try:
        async with asyncio.timeout(CLOSED_WITHIN):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float, stop: asyncio.Event) -> None:
    """Send ``data`` a byte at a time until it is sent, the peer goes, or ``stop``."""
    for byte in data:
        if stop.is_set():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_a_slowloris_of_200_connections_is_closed_while_others_are_answered(server: ServerProcess) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    stop = asyncio.Event()
    connections = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
    senders = [asyncio.create_task(trickle(w, head, 0.2, stop)) for _, w in connections]
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            assert (await client.get("/health")).status_code == 200  # served meanwhile
        closed = await asyncio.gather(*(closed_by_server(r) for r, _ in connections))
        assert all(closed), f"{closed.count(False)} of 200 slow connections still open"
    finally:
        stop.set()
        await asyncio.gather(*senders)
        for _, writer in connections:
            writer.close()


async def test_a_second_request_trickled_on_a_kept_alive_connection_is_closed(server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    stop = asyncio.Event()
    sender = asyncio.create_task(trickle(writer, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.3, stop))
    try:
        assert await closed_by_server(reader)
    finally:
        stop.set()
        await sender
        writer.close()


async def test_a_body_that_stops_arriving_is_closed(server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    body = json.dumps({"username": "someone", "password": "correct horse"}).encode()
    writer.write(
        b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:5]
    )
    await writer.drain()
    try:
        assert await closed_by_server(reader)
    finally:
        writer.close()


async def test_a_body_sent_at_a_reasonable_rate_is_not_cut_off(server: ServerProcess) -> None:
    """3,000 bytes over about 2.5 s: past the 1 s body deadline, but each 1,000 bytes buys a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    body = json.dumps({"username": "x" * 2950, "password": "correct horse"}).encode()
    writer.write(
        b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    for i in range(0, len(body), 600):
        writer.write(body[i : i + 600])
        await writer.drain()
        await asyncio.sleep(0.5)
    status = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN)
    writer.close()
    assert status.startswith(b"HTTP/1.1 ") and not status.startswith(b"HTTP/1.1 5"), status  # answered (422/401)


async def test_a_websocket_outlives_the_read_deadlines(server: ServerProcess) -> None:
    remote = Remote(server.base_url, server.ws_url)
    try:
        person = await remote.account()
        cid = await remote.group(person)
        async with remote.socket(cid, person.token) as ws:
            await ready(ws)
            await asyncio.sleep(3)  # three header deadlines
            await remote.send(person, cid, "still here")
            frame = await next_frame(ws)
            assert frame["type"] == "message.created" and frame["message"]["body"] == "still here", frame
    finally:
        await remote.close()


def test_past_the_connection_cap_new_requests_are_503(tmp_path: Path) -> None:
    process = ServerProcess("--memory", env={"CONVOCORE_MAX_CONNECTIONS": "8"}, cwd=tmp_path).start()
    try:
        held = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(8)]
        try:
            r = httpx.get(f"{process.base_url}/health", timeout=10)
            assert r.status_code == 503
        finally:
            for s in held:
                s.close()
        with httpx.Client(base_url=process.base_url) as client:  # room again once they are gone
            for _ in range(50):
                if client.get("/health").status_code == 200:
                    break
            else:
                pytest.fail("still 503 after the held connections closed")
    finally:
        process.stop()
