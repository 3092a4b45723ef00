"""The real-time engine on one real server process: the user socket, resume, ordering,
typing, presence, slow consumers, and sockets closed by logout, expiry and silence."""

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.remote import Account, Remote, assert_closed_with, next_frame, ready, seqs_until
from tests.support.scrape import metric
from tests.support.server import ServerProcess
from tests.support.storage import Storage, storage_for

SMALL = {
    "CONVOCORE_WS_SEND_QUEUE": "16",
    "CONVOCORE_RESYNC_LIMIT": "20",
    "CONVOCORE_TYPING_BURST": "3",
    "CONVOCORE_TYPING_WINDOW_S": "30",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rt")
    with storage_for(default="sqlite", tmp=tmp) as storage:  # the default: the server's SQLite file
        process = ServerProcess(*storage.server_args, env=SMALL, cwd=tmp).start()
        yield process
        process.stop()


def user_socket(remote: Remote, token: str, **kwargs: Any) -> Any:
    return websockets.connect(f"{remote.ws_url}/ws/?token={token}", open_timeout=10, **kwargs)


async def test_user_socket_follows_every_conversation_including_new_ones(remote: Remote) -> None:
    me, a, b = await remote.account(), await remote.account(), await remote.account()
    first = await remote.group(a, me, title="first")
    async with user_socket(remote, me.token) as ws:
        await ready(ws)
        await remote.send(a, first, "one")
        frame = await next_frame(ws)
        assert (frame["type"], frame["conversation_id"], frame["message"]["body"]) == ("message.created", first, "one")
        later = await remote.group(b, me, title="later")  # joined after connecting
        joined = await next_frame(ws, skip=("presence",))
        assert (joined["type"], joined["conversation_id"]) == ("member.joined", later)
        await remote.send(b, later, "two")
        frame = await next_frame(ws, skip=("presence", "member.joined"))
        assert (frame["conversation_id"], frame["message"]["body"]) == (later, "two")
        await ws.send(json.dumps({"type": "message.send", "conversation_id": later, "body": "mine", "client_id": "c"}))
        kinds = {(f["type"], f.get("conversation_id")) for f in [await next_frame(ws), await next_frame(ws)]}
        assert kinds == {("ack", later), ("message.created", later)}
        await ws.send(json.dumps({"type": "message.send", "body": "where to?"}))
        error = await next_frame(ws)
        assert (error["type"], error["field"]) == ("error", "conversation_id")


async def test_removal_stops_delivery_on_the_user_socket_at_once(remote: Remote) -> None:
    me, owner = await remote.account(), await remote.account()
    kept = await remote.group(owner, me, title="kept")
    left = await remote.group(owner, me, title="left")
    async with user_socket(remote, me.token) as ws:
        await ready(ws)
        r = await remote.http.delete(f"/api/conversations/{left}/members/{me.id}/", headers=owner.auth)
        assert r.status_code == 204
        gone = await next_frame(ws)
        assert (gone["type"], gone["conversation_id"], gone["user_id"]) == ("member.left", left, me.id)
        await remote.send(owner, left, "secret")
        await remote.send(owner, kept, "hello")
        frame = await next_frame(ws)
        assert (frame["conversation_id"], frame["message"]["body"]) == (kept, "hello")


async def test_resume_with_since_replays_then_goes_live_without_gap_or_repeat(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    for i in range(5):
        await remote.send(a, cid, f"m{i}")

    async def keep_sending() -> None:
        for i in range(5, 30):
            await remote.send(a, cid, f"m{i}")

    sender = asyncio.create_task(keep_sending())  # traffic across the seam
    async with remote.socket(cid, b.token + "&since=2") as ws:
        seen = await seqs_until(ws, 30)
    await sender
    assert seen == list(range(3, 31))


async def test_resume_frame_on_the_user_socket(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    for i in range(4):
        await remote.send(a, cid, f"m{i}")
    async with user_socket(remote, b.token) as ws:
        await ready(ws)
        await ws.send(json.dumps({"type": "resume", "since": {cid: 1}}))
        assert await seqs_until(ws, 4) == [2, 3, 4]
        await remote.send(a, cid, "live")
        assert await seqs_until(ws, 5) == [5]
        await ws.send(json.dumps({"type": "resume", "since": {"not-mine": 0}}))
        error = await next_frame(ws)
        assert (error["type"], error["code"], error["field"]) == ("error", "not-found", "since")


async def test_a_gap_past_the_limit_asks_the_client_to_resync(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    for i in range(25):
        await remote.send(a, cid, f"m{i}")
    async with remote.socket(cid, b.token + "&since=0") as ws:
        frame = await next_frame(ws)
        assert frame == {"type": "resync", "conversation_id": cid, "last_seq": 25}
        await remote.send(a, cid, "after")
        assert await seqs_until(ws, 26) == [26]


async def test_a_socket_killed_mid_stream_resumes_with_nothing_lost_or_repeated(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    total = 120

    async def stream() -> None:
        for i in range(total):
            await remote.send(a, cid, f"m{i}")

    received: list[int] = []
    ws = await remote.socket(cid, b.token)
    await ready(ws)
    sender = asyncio.create_task(stream())
    received += await seqs_until(ws, 40)
    ws.transport.abort()  # killed: no close handshake
    async with remote.socket(cid, b.token + f"&since={received[-1]}") as again:
        received += await seqs_until(again, total)
    await sender
    assert received == list(range(1, total + 1))


async def test_concurrent_senders_are_delivered_in_seq_order(remote: Remote) -> None:
    people = [await remote.account() for _ in range(4)]
    watcher = await remote.account()
    cid = await remote.group(people[0], *people[1:], watcher)
    async with remote.socket(cid, watcher.token) as ws:
        await ready(ws)
        await asyncio.gather(*(remote.send(p, cid, f"{i}") for i in range(15) for p in people))
        assert await seqs_until(ws, 60) == list(range(1, 61))


async def test_typing_is_relayed_limited_and_never_stored(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with remote.socket(cid, a.token) as wa, remote.socket(cid, b.token) as wb:
        await ready(wa)
        await ready(wb)
        for _ in range(3):
            await wa.send(json.dumps({"type": "typing"}))
            frame = await next_frame(wb)
            assert frame == {"type": "typing", "conversation_id": cid, "user_id": a.id}
        await wa.send(json.dumps({"type": "typing"}))
        limited = await next_frame(wa, skip=("presence", "typing"))
        assert (limited["type"], limited["code"]) == ("error", "rate-limited")
    page = (await remote.http.get(f"/api/messages/{cid}/", headers=a.auth)).json()
    assert page["items"] == []


async def test_presence_follows_the_first_and_last_socket(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with user_socket(remote, b.token) as watcher:
        await ready(watcher)
        first = await remote.socket(cid, a.token)
        assert await next_frame(watcher, skip=()) == {"type": "presence", "user_id": a.id, "status": "online"}
        second = await user_socket(remote, a.token)
        await ready(second)
        await first.close()
        await ready(watcher)  # nothing about a went out: a is still online on the second socket
        await second.close()
        assert await next_frame(watcher, skip=()) == {"type": "presence", "user_id": a.id, "status": "offline"}


def _raw_socket_that_never_reads(port: int, path: str) -> socket.socket:
    """A WebSocket client below any library: it shakes hands, then reads nothing, with a tiny
    receive buffer (client libraries keep reading into memory of their own)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert raw.recv(12) == b"HTTP/1.1 101"
    return raw


async def _drain_until_close_code(raw: socket.socket) -> int | None:
    """Read the frames the server queued, in order, until its close frame; return its code
    (None: the connection ended, or 20 s passed, without one)."""
    raw.setblocking(False)
    data, at, deadline = b"", -1, time.monotonic() + 20
    while time.monotonic() < deadline:
        if at < 0 and (end := data.find(b"\r\n\r\n")) >= 0:
            at = end + 4  # past the rest of the handshake's response headers
        while at >= 0 and len(data) - at >= 2:  # server frames are unmasked: header, then the payload
            opcode, size, head = data[at] & 0x0F, data[at + 1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(data[at + 2 : at + 4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(data[at + 2 : at + 10], "big"), 10
            if len(data) - at < head + size:
                break
            if opcode == 0x8:
                return int.from_bytes(data[at + head : at + head + 2], "big")
            at += head + size
        try:
            chunk = raw.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.02)
            continue
        if not chunk:
            return None
        data += chunk
    return None


async def test_a_consumer_that_stops_reading_is_closed_and_others_keep_pace(
    remote: Remote, server: ServerProcess
) -> None:
    sender, fast, slow = await remote.account(), await remote.account(), await remote.account()
    cid = await remote.group(sender, fast, slow)
    total, body = 1500, "x" * 3500  # ~5 MB: more than the kernel buffers between them hold
    # The sender stays at most WINDOW messages ahead of what the fast client has read: its lag
    # (WINDOW frames, ~110 KB) fits the socket's own buffers whatever else this test process is
    # doing, so only the consumer that stops reading can overflow its queue. (Racing all 1,500
    # sends against one reader on this event loop let a busy test process look like a slow one.)
    window = 32
    drops = await metric(remote.http, "convocore_send_queue_drops_total")
    raw = _raw_socket_that_never_reads(server.port, f"/ws/chat/{cid}/?token={slow.token}")
    try:
        async with remote.socket(cid, fast.token) as ws_fast:
            await ready(ws_fast)
            seen: list[int] = []
            reading = asyncio.ensure_future(seqs_reading_resyncs(remote, fast, ws_fast, cid, total, seen))
            sent = 0
            while sent < total:
                batch = min(window - (sent - len(seen)), total - sent)
                if batch <= 0 or reading.done():
                    await asyncio.wait([reading], timeout=0.005)
                    if reading.done() and len(seen) < total:
                        reading.result()  # the reader failed: say why
                    continue
                sent += batch
                await asyncio.gather(*(remote.send(sender, cid, body) for _ in range(batch)))
            assert await asyncio.wait_for(reading, 30) == list(range(1, total + 1))
        assert await _drain_until_close_code(raw) == 4408
    finally:
        raw.close()
    assert await metric(remote.http, "convocore_send_queue_drops_total") >= drops + 1


async def seqs_reading_resyncs(
    remote: Remote, who: Account, ws: Any, cid: str, last: int, seen: list[int] | None = None
) -> list[int]:
    """Like seqs_until, answering a resync as a client does: by paging the gap over REST. (On
    PostgreSQL, concurrent commits may publish far enough out of order to pass the resync limit.)
    ``seen`` is filled as frames arrive, for a caller that watches the progress."""
    seen = [] if seen is None else seen
    while not seen or seen[-1] < last:
        frame = await next_frame(ws, timeout=10)
        if frame["type"] == "message.created":
            seen.append(frame["message"]["seq"])
        elif frame["type"] == "resync":
            while (seen[-1] if seen else 0) < frame["last_seq"]:
                params = {"after": seen[-1] if seen else 0, "before": frame["last_seq"] + 1, "limit": 200}
                r = await remote.http.get(f"/api/messages/{cid}/", params=params, headers=who.auth)
                items = [m["seq"] for m in r.json()["items"]]
                assert items, r.text  # the resync named a seq the server has
                seen += items
    return seen


async def test_logout_closes_that_sessions_sockets_only(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    r = await remote.http.post("/api/login/", json={"username": a.username, "password": "correct horse"})
    other_session = Account(a.id, a.username, r.json()["access_token"], r.json()["refresh_token"])
    async with (
        remote.socket(cid, a.token) as chat,
        user_socket(remote, a.token) as everything,
        user_socket(remote, other_session.token) as kept,
    ):
        for ws in (chat, everything, kept):
            await ready(ws)
        assert (await remote.http.post("/api/logout/", headers=a.auth)).status_code == 204
        await assert_closed_with(chat, 4401)
        await assert_closed_with(everything, 4401)
        await ready(kept)


async def test_sockets_close_when_the_access_token_expires(tmp_path: Path, server_storage: Storage) -> None:
    server = ServerProcess(*server_storage.server_args, env={"CONVOCORE_ACCESS_TTL_S": "2"}, cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        a = await remote.account()
        async with user_socket(remote, a.token) as ws:
            await ready(ws)
            await assert_closed_with(ws, 4401, timeout=10)
    finally:
        await remote.close()
        server.stop()


async def test_a_silent_peer_is_pinged_and_dropped(tmp_path: Path, server_storage: Storage) -> None:
    env = {"CONVOCORE_WS_PING_INTERVAL_S": "0.5", "CONVOCORE_WS_PING_TIMEOUT_S": "0.5"}
    server = ServerProcess(*server_storage.server_args, env=env, cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        a, b = await remote.account(), await remote.account()
        await remote.group(a, b)
        async with user_socket(remote, b.token) as watcher:
            await ready(watcher)
            silent = await user_socket(remote, a.token, ping_interval=None)
            await ready(silent)
            assert (await next_frame(watcher, skip=()))["status"] == "online"
            silent.transport.pause_reading()  # never sees the server's pings, so never answers
            offline = await next_frame(watcher, skip=(), timeout=10)
            assert offline == {"type": "presence", "user_id": a.id, "status": "offline"}
            silent.transport.abort()
    finally:
        await remote.close()
        server.stop()


async def test_every_kind_of_event_reaches_the_sockets(remote: Remote) -> None:
    owner, member = await remote.account(), await remote.account()
    cid = await remote.group(owner, member)
    async with user_socket(remote, member.token) as ws:
        await ready(ws)
        await remote.send(owner, cid, "first")
        auth = owner.auth
        await remote.http.patch(f"/api/messages/{cid}/1/", json={"body": "edited"}, headers=auth)
        await remote.http.delete(f"/api/messages/{cid}/1/", headers=auth)
        await remote.http.patch(f"/api/conversations/{cid}/", json={"title": "renamed"}, headers=auth)
        await remote.http.patch(f"/api/conversations/{cid}/members/{member.id}/", json={"role": "admin"}, headers=auth)
        await remote.http.post(f"/api/conversations/{cid}/read/", json={"seq": 1}, headers=member.auth)
        kinds = [await next_frame(ws) for _ in range(6)]
    assert [k["type"] for k in kinds] == [
        "message.created",
        "message.updated",
        "message.deleted",
        "conversation.updated",
        "member.role_changed",
        "read",
    ]
    assert all(k["conversation_id"] == cid for k in kinds)
    assert kinds[1]["message"]["body"] == "edited"
    assert (kinds[2]["message"]["deleted"], kinds[2]["message"]["body"]) == (True, "")
    assert kinds[3]["title"] == "renamed"
    assert (kinds[4]["member"]["user_id"], kinds[4]["member"]["role"]) == (member.id, "admin")
    assert (kinds[5]["user_id"], kinds[5]["seq"]) == (member.id, 1)


async def test_presence_snapshot_lists_online_members(remote: Remote) -> None:
    a, b, outsider = await remote.account(), await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with user_socket(remote, a.token) as ws:
        await ready(ws)
        r = await remote.http.get(f"/api/conversations/{cid}/presence/", headers=b.auth)
        assert r.json() == {"conversation_id": cid, "online": [a.id]}
        hidden = await remote.http.get(f"/api/conversations/{cid}/presence/", headers=outsider.auth)
        assert hidden.status_code == 404


async def test_bad_since_closes_with_4400(remote: Remote) -> None:
    a = await remote.account()
    cid = await remote.group(a)
    for since in ("abc", "-1", "\u00b2"):
        async with remote.socket(cid, a.token + f"&since={since}") as ws:
            await assert_closed_with(ws, 4400)
