"""The ceiling: a bare WebSocket relay with no auth and no storage. A socket joins the room named
by its path (/ws/chat/{room}/); each text frame it sends is numbered within the room and sent,
encoded once, to every socket of the room, the sender's included, in Convocore's frame shape so
the load generator checks both the same way.

    python -m benchmarks.relay {websockets|uvicorn} PORT

Two servers on the same stack as Convocore: a plain ``websockets`` server (its ``broadcast``
writes to every socket without awaiting), and raw ASGI on uvicorn (the same uvicorn and
WebSocket implementation ``convocore serve`` runs).
"""

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


def run_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

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


if __name__ == "__main__":
    {"websockets": run_websockets, "uvicorn": run_uvicorn}[sys.argv[1]](int(sys.argv[2]))
