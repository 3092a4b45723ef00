"""The ceiling: a bare WebSocket relay with no auth and no storage. A socket joins the room named
by its path (/ws/chat/{room}/); each text frame it sends is numbered within the room and sent,
encoded once, to every socket of the room, the sender's included, in Convocore's frame shape so
the load generator checks both the same way.

    python -m benchmarks.relay {coalesced|websockets|uvicorn} PORT

Three servers on the same stack as Convocore:

- ``coalesced`` (the ceiling, the fastest relay written here): a ``websockets`` server whose
  frame bytes are built once per message, and whose sockets' frames are gathered for the event
  loop's current round and written in one ``transport.write`` each at its end, as Convocore's
  own sockets do (``entrypoints/uvicorn_sockets.py``). Writing to the transport directly skips websockets' own
  bookkeeping: fine here, where every frame is a complete text frame to an open socket.
- ``websockets``: the same server writing each frame to each socket at once
  (``websockets.broadcast``): the per-frame relay, run beside the ceiling for comparison.
- ``uvicorn``: raw ASGI on uvicorn (the same uvicorn and WebSocket implementation ``convocore
  serve`` runs), awaiting each socket's ``send``.
"""

import asyncio
import struct
import sys
from typing import Any

import msgspec


class _Send(msgspec.Struct):
    body: str


_decode = msgspec.json.Decoder(_Send).decode
_encode_str = msgspec.json.encode


class Rooms:
    def __init__(self) -> None:
        self.members: dict[str, set[Any]] = {}
        self.seq: dict[str, int] = {}

    def frame(self, room: str, text: str | bytes) -> str:
        seq = self.seq[room] = self.seq.get(room, 0) + 1
        body = _encode_str(_decode(text).body).decode()
        return f'{{"type":"message.created","conversation_id":"{room}","message":{{"seq":{seq},"body":{body}}}}}'


def text_frame(text: str) -> bytes:
    """An unfragmented, unmasked text frame (server to client), as websockets would build it.
    (Convocore's ``uvicorn_sockets.text_frame`` does the same; the relay uses none of Convocore's code.)"""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class _Out:
    """One socket's frames waiting for the end of the loop's round."""

    __slots__ = ("frames", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.frames: list[bytes] | None = None


class _Round:
    def __init__(self) -> None:
        self.waiting: list[_Out] = []

    def deliver(self, outs: "set[_Out]", data: bytes) -> None:
        waiting = self.waiting
        if not waiting:
            asyncio.get_running_loop().call_soon(self.flush)
        for out in outs:
            frames = out.frames
            if frames is None:
                out.frames = [data]
                waiting.append(out)
            else:
                frames.append(data)

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for out in waiting:
            frames, out.frames = out.frames or [], None
            if not out.transport.is_closing():
                out.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


def run_coalesced(port: int) -> None:
    from websockets.asyncio.server import ServerConnection

    rooms: dict[str, set[_Out]] = {}
    numbering = Rooms()
    writes = _Round()

    async def handler(ws: ServerConnection) -> None:
        room = ws.request.path if ws.request is not None else "/"
        members = rooms.setdefault(room, set())
        mine = _Out(ws.transport)
        members.add(mine)
        try:
            async for text in ws:
                writes.deliver(members, text_frame(numbering.frame(room, text)))
        finally:
            members.discard(mine)

    _serve_websockets(handler, port)


def run_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast

    rooms = Rooms()

    async def handler(ws: ServerConnection) -> None:
        room = ws.request.path if ws.request is not None else "/"
        members = rooms.members.setdefault(room, set())
        members.add(ws)
        try:
            async for text in ws:
                broadcast(members, rooms.frame(room, text))
        finally:
            members.discard(ws)

    _serve_websockets(handler, port)


def _serve_websockets(handler: Any, port: int) -> None:
    from websockets.asyncio.server import serve

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, ping_interval=None) as server:
            await server.serve_forever()

    import uvloop

    uvloop.run(main())


def run_uvicorn(port: int) -> None:
    import uvicorn

    rooms = Rooms()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "websocket":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        room = scope["path"]
        members = rooms.members.setdefault(room, set())
        members.add(send)
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                out = {"type": "websocket.send", "text": rooms.frame(room, message.get("text") or "")}
                for member in tuple(members):
                    await member(out)
        finally:
            members.discard(send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", ws_ping_interval=None)


RELAYS = {"coalesced": run_coalesced, "websockets": run_websockets, "uvicorn": run_uvicorn}

if __name__ == "__main__":
    RELAYS[sys.argv[1]](int(sys.argv[2]))
