"""Faults: a server killed mid-stream, a locked SQLite file, PostgreSQL connections lost.
Whatever was acknowledged is stored; failures are 503 with a retry hint, never 500."""

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import websockets

from tests.support.remote import Account, Remote, next_frame
from tests.support.server import ServerProcess


async def _history(remote: Remote, who: Account, cid: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    after = 0
    while True:
        page = (await remote.http.get(f"/api/messages/{cid}/?after={after}&limit=200", headers=who.auth)).json()
        items += page["items"]
        if not page["has_more"]:
            return items
        after = int(page["items"][-1]["seq"])


async def test_kill_9_while_clients_send_loses_no_acknowledged_message(tmp_path: Path) -> None:
    server = ServerProcess(cwd=tmp_path).start()  # the SQLite default, in tmp_path
    remote = Remote(server.base_url, server.ws_url)
    writers = [await remote.account() for _ in range(4)]
    cid = await remote.group(writers[0], *writers[1:])
    acked: set[str] = set()
    attempted: list[tuple[Account, str]] = []

    async def rest_writer(who: Account, n: int) -> None:
        for i in range(200):
            client_id = f"rest-{n}-{i}"
            attempted.append((who, client_id))
            try:
                r = await remote.http.post(
                    "/api/messages/",
                    json={"conversation_id": cid, "body": client_id, "client_id": client_id},
                    headers=who.auth,
                )
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code in (200, 201):
                acked.add(client_id)

    async def socket_writer(who: Account) -> None:
        try:
            async with remote.socket(cid, who.token) as ws:
                for i in range(200):
                    client_id = f"ws-{i}"
                    attempted.append((who, client_id))
                    await ws.send(json.dumps({"type": "message.send", "body": client_id, "client_id": client_id}))
                    while (frame := await next_frame(ws, timeout=5))["type"] != "ack":
                        pass
                    acked.add(str(frame["client_id"]))
        except (websockets.ConnectionClosed, OSError, TimeoutError):
            return

    async def kill_after_some_acks() -> None:
        for _ in range(3000):  # bounded: 30 s at most
            if len(acked) >= 150:
                break
            await asyncio.sleep(0.01)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)

    await asyncio.gather(
        *(rest_writer(w, n) for n, w in enumerate(writers[:3])), socket_writer(writers[3]), kill_after_some_acks()
    )
    await remote.close()
    assert server.process is not None
    server.process.wait(timeout=10)
    assert 150 <= len(acked) < len(attempted)  # killed mid-stream, not after the fact

    again = ServerProcess(cwd=tmp_path).start()  # same file, new process
    remote = Remote(again.base_url, again.ws_url)
    try:
        stored = await _history(remote, writers[0], cid)
        seqs = [m["seq"] for m in stored]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat
        bodies = [m["body"] for m in stored]
        assert acked <= set(bodies)  # every acknowledged message survived
        assert len(bodies) == len(set(bodies))
        for who, client_id in attempted:  # clients resume: resend what was not acknowledged
            if client_id not in acked:
                r = await remote.http.post(
                    "/api/messages/",
                    json={"conversation_id": cid, "body": client_id, "client_id": client_id},
                    headers=who.auth,
                )
                assert r.status_code in (200, 201), r.text
        final = await _history(remote, writers[0], cid)
        assert sorted(cast(str, m["body"]) for m in final) == sorted(c for _, c in attempted)
        assert [m["seq"] for m in final] == list(range(1, len(final) + 1))
    finally:
        await remote.close()
        again.stop()


async def test_a_locked_sqlite_database_gives_503_and_recovers(tmp_path: Path) -> None:
    server = ServerProcess(env={"CONVOCORE_SQLITE_BUSY_TIMEOUT_MS": "300"}, cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        a = await remote.account()
        cid = await remote.group(a)
        payload = {"conversation_id": cid, "body": "while locked", "client_id": "locked-1"}
        blocker = sqlite3.connect(tmp_path / "convocore.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            r = await remote.http.post("/api/messages/", json=payload, headers=a.auth)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == "urn:convocore:problem:unavailable"
            assert int(r.headers["retry-after"]) >= 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await _history(remote, a, cid)) == []  # the refused write left nothing behind
        r = await remote.http.post("/api/messages/", json=payload, headers=a.auth)
        assert r.status_code == 201  # the same request, retried, goes through
    finally:
        await remote.close()
        server.stop()


async def test_lost_postgresql_connections_give_503_then_recover(tmp_path: Path, postgres_database: str) -> None:
    server = ServerProcess("--database-url", postgres_database, cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    name = urlsplit(postgres_database).path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(urlsplit(postgres_database)._replace(scheme="postgresql", path="/test")))
    try:
        a = await remote.account()
        cid = await remote.group(a)
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        statuses = []
        for i in range(3):
            r = await remote.http.post(
                "/api/messages/", json={"conversation_id": cid, "body": f"m{i}", "client_id": f"c{i}"}, headers=a.auth
            )
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1
        assert statuses == [503, 503, 503]
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for i in range(3):  # clients retry with the same client_id: stored once each
            r = await remote.http.post(
                "/api/messages/", json={"conversation_id": cid, "body": f"m{i}", "client_id": f"c{i}"}, headers=a.auth
            )
            assert r.status_code == 201, r.text
        assert [m["seq"] for m in await _history(remote, a, cid)] == [1, 2, 3]
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await remote.close()
        server.stop()
