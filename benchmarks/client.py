"""The load generator's clients: a minimal keep-alive HTTP/1.1 client (a few microseconds per
request on the client side, so latency is the server's) and the setup calls built on it."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PASSWORD = "correct horse battery"


class HttpError(RuntimeError):
    pass


class Http:
    """One keep-alive connection; one request at a time."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "Http":
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            raise HttpError("use 'async with Http(...)'")
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n"
        if token is not None:
            head += f"authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status, length = int(raw[9:12]), 0
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise HttpError("chunked responses are not supported by this client")
        return status, (await self._reader.readexactly(length) if length else b"")

    async def json(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = await self.request(method, path, body, token)
        if status >= 400:
            raise HttpError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data) if data else None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    token: str


async def accounts(base_url: str, count: int, *, prefix: str, concurrency: int = 16) -> list[Account]:
    """Register and log in ``count`` users (cheap argon2 on the benchmark server)."""
    out: list[Account | None] = [None] * count
    next_index = iter(range(count))

    async def worker() -> None:
        async with Http(base_url) as http:
            for i in next_index:
                name = f"{prefix}{i}"
                await http.json("POST", "/api/register/", {"username": name, "password": PASSWORD})
                tokens = await http.json("POST", "/api/login/", {"username": name, "password": PASSWORD})
                out[i] = Account(tokens["user"]["id"], tokens["access_token"])

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return [a for a in out if a is not None]


async def groups(base_url: str, rooms: list[list[Account]], *, title: str) -> list[str]:
    """One group per list of accounts; the first account owns it."""
    async with Http(base_url) as http:
        ids = []
        for n, members in enumerate(rooms):
            owner, rest = members[0], members[1:]
            payload = {"kind": "group", "title": f"{title} {n}", "members": [m.id for m in rest]}
            ids.append(str((await http.json("POST", "/api/conversations/", payload, owner.token))["id"]))
        return ids


def split(accounts_: list[Account], rooms: int, members: int) -> list[list[Account]]:
    if len(accounts_) < rooms * members:
        raise ValueError(f"{rooms} rooms of {members} need {rooms * members} accounts, got {len(accounts_)}")
    return [accounts_[r * members : (r + 1) * members] for r in range(rooms)]
