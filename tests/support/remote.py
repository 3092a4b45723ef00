"""A small client for a real server over HTTP and WebSocket, for the integration tests."""

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

_counter = itertools.count(1)


@dataclass
class Account:
    id: str
    username: str
    token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Remote:
    def __init__(self, base_url: str, ws_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.ws_url = ws_url

    async def close(self) -> None:
        await self.http.aclose()

    async def account(self, prefix: str = "u") -> Account:
        username = f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:8]}"
        r = await self.http.post("/api/register/", json={"username": username, "password": "correct horse"})
        assert r.status_code == 201, r.text
        r = await self.http.post("/api/login/", json={"username": username, "password": "correct horse"})
        assert r.status_code == 200, r.text
        body = r.json()
        return Account(body["user"]["id"], username, body["access_token"], body["refresh_token"])

    async def group(self, owner: Account, *members: Account, title: str = "room") -> str:
        r = await self.http.post(
            "/api/conversations/",
            json={"kind": "group", "title": title, "members": [m.id for m in members]},
            headers=owner.auth,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def send(self, who: Account, conversation_id: str, body: str, **extra: Any) -> dict[str, Any]:
        r = await self.http.post(
            "/api/messages/", json={"conversation_id": conversation_id, "body": body, **extra}, headers=who.auth
        )
        assert r.status_code in (200, 201), r.text
        result: dict[str, Any] = r.json()
        return result

    def socket(self, conversation_id: str, token: str | None) -> Any:
        query = f"?token={token}" if token is not None else ""
        return websockets.connect(f"{self.ws_url}/ws/chat/{conversation_id}/{query}", open_timeout=10)


async def next_frame(ws: Any, timeout: float = 5, *, skip: tuple[str, ...] = ("presence",)) -> dict[str, Any]:
    """The next server frame, passing over frame types in ``skip`` (presence, unless told)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] not in skip:
            return frame


async def frames_until(ws: Any, predicate: Any, timeout: float = 5) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        frame = await next_frame(ws, timeout)
        seen.append(frame)
        if predicate(frame):
            return seen


async def assert_closed_with(ws: Any, code: int, timeout: float = 5) -> None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        assert closed.rcvd.code == code, closed.rcvd


# Every frame type the server sends; the AsyncAPI and fuzz tests check the code against it.
SERVER_FRAME_TYPES = frozenset(
    {
        "message.created",
        "message.updated",
        "message.deleted",
        "member.joined",
        "member.left",
        "member.role_changed",
        "conversation.updated",
        "read",
        "typing",
        "presence",
        "resync",
        "ack",
        "error",
        "pong",
    }
)


async def ready(ws: Any) -> None:
    """Ping until pong: the socket is registered (its subscriptions may still be settling)."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_frame(ws, skip=("presence", "member.joined")) == {"type": "pong"}


async def seqs_until(ws: Any, last: int, conversation_id: str | None = None, timeout: float = 10) -> list[int]:
    """The seqs of message.created frames (of one conversation, if named) up to ``last``."""
    seen: list[int] = []
    while not seen or seen[-1] < last:
        frame = await next_frame(ws, timeout=timeout)
        if frame["type"] == "message.created" and conversation_id in (None, frame["conversation_id"]):
            seen.append(frame["message"]["seq"])
    return seen
