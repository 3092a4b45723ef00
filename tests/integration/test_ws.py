"""The per-conversation chat socket, against a real `convocore serve --memory` process (or on
CONVOCORE_TEST_DATABASE's storage)."""

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.support.remote import Remote, assert_closed_with, frames_until, next_frame
from tests.support.server import ServerProcess
from tests.support.storage import storage_for

QUIET = 0.3  # how long "nothing more arrives" is watched for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ws")
    with storage_for(default="memory", tmp=tmp) as storage:
        process = ServerProcess(*storage.server_args, cwd=tmp).start()
        yield process
        process.stop()


async def test_bad_or_missing_token_closes_with_4401(remote: Remote) -> None:
    owner = await remote.account()
    cid = await remote.group(owner)
    for token in (None, "", "not-a-token"):
        async with remote.socket(cid, token) as ws:
            await assert_closed_with(ws, 4401)


async def test_logged_out_token_closes_with_4401(remote: Remote) -> None:
    owner = await remote.account()
    cid = await remote.group(owner)
    await remote.http.post("/api/logout/", headers=owner.auth)
    async with remote.socket(cid, owner.token) as ws:
        await assert_closed_with(ws, 4401)


async def test_non_member_closes_with_4403(remote: Remote) -> None:
    owner, outsider = await remote.account(), await remote.account()
    cid = await remote.group(owner)
    for target in (cid, "no-such-conversation"):
        async with remote.socket(target, outsider.token) as ws:
            await assert_closed_with(ws, 4403)


async def test_socket_send_acks_the_sender_and_reaches_every_member(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with remote.socket(cid, a.token) as wa, remote.socket(cid, b.token) as wb:
        await wa.send(json.dumps({"type": "ping"}))
        assert await next_frame(wa) == {"type": "pong"}  # a's socket is registered
        await wb.send(json.dumps({"type": "ping"}))
        assert await next_frame(wb) == {"type": "pong"}
        await wa.send(json.dumps({"type": "message.send", "body": "hello", "client_id": "k1"}))
        seen_a = await frames_until(wa, lambda f: f["type"] == "ack")
        created_b = await next_frame(wb)
    ack = seen_a[-1]
    assert ack["client_id"] == "k1"
    assert ack["seq"] == 1
    assert created_b["type"] == "message.created"
    assert created_b["conversation_id"] == cid
    assert created_b["message"]["body"] == "hello"
    assert created_b["message"]["id"] == ack["id"]
    assert created_b["message"]["sender_id"] == a.id


async def test_rest_sends_are_pushed_to_sockets_in_seq_order(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with remote.socket(cid, b.token) as wb:
        await wb.send(json.dumps({"type": "ping"}))
        await next_frame(wb)
        for i in range(5):
            await remote.send(a, cid, f"m{i}")
        frames = [await next_frame(wb) for _ in range(5)]
    assert [f["message"]["seq"] for f in frames] == [1, 2, 3, 4, 5]
    assert {f["type"] for f in frames} == {"message.created"}


async def test_resending_a_client_id_acks_the_original_and_broadcasts_nothing(remote: Remote) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    async with remote.socket(cid, a.token) as wa, remote.socket(cid, b.token) as wb:
        for ws in (wa, wb):
            await ws.send(json.dumps({"type": "ping"}))
            await next_frame(ws)
        frame = json.dumps({"type": "message.send", "body": "once", "client_id": "same"})
        await wa.send(frame)
        seen = await frames_until(wa, lambda f: f["type"] == "ack")
        first = seen[-1]
        if not any(f["type"] == "message.created" for f in seen):  # ack and echo come in either order
            await frames_until(wa, lambda f: f["type"] == "message.created")
        await wa.send(frame)
        second = await next_frame(wa)
        assert (second["type"], second["id"], second["seq"]) == ("ack", first["id"], first["seq"])
        assert (await next_frame(wb))["type"] == "message.created"
        with pytest.raises(asyncio.TimeoutError):
            await next_frame(wb, timeout=QUIET)


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("{not json", "bad-frame", None),
        ('{"type": "dance"}', "validation-error", "type"),
        ('{"type": "message.send"}', "validation-error", "body"),
        ('{"type": "message.send", "body": 5}', "validation-error", "body"),
        ('{"type": "message.send", "body": ""}', "validation-error", "body"),
        ('{"type": "message.send", "body": "   "}', "validation-error", "body"),
        ('{"type": "message.send", "body": "hi", "extra": 1}', "validation-error", None),
        ('{"type": "message.send", "body": "hi", "reply_to": 99}', "validation-error", "reply_to"),
        ('{"type": "message.send", "body": "hi", "conversation_id": "other"}', "validation-error", "conversation_id"),
        ("[1, 2]", "validation-error", None),
        ("x" * 20_000, "frame-too-large", None),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    remote: Remote, raw: str, code: str, field: str | None
) -> None:
    a = await remote.account()
    cid = await remote.group(a)
    async with remote.socket(cid, a.token) as ws:
        await ws.send(raw)
        error = await next_frame(ws)
        assert error["type"] == "error"
        assert error["code"] == code, error
        if field is not None:
            assert error["field"] == field, error
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}
    r = await remote.http.get(f"/api/messages/{cid}/", headers=a.auth)
    assert r.json()["items"] == []  # nothing bad was stored


async def test_binary_frames_are_refused_politely(remote: Remote) -> None:
    a = await remote.account()
    cid = await remote.group(a)
    async with remote.socket(cid, a.token) as ws:
        await ws.send(b'{"type": "ping"}')
        assert (await next_frame(ws))["code"] == "bad-frame"
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}


async def test_a_removed_member_is_cut_off_at_once(remote: Remote) -> None:
    owner, member = await remote.account(), await remote.account()
    cid = await remote.group(owner, member)
    async with remote.socket(cid, member.token) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await next_frame(ws)
        r = await remote.http.delete(f"/api/conversations/{cid}/members/{member.id}/", headers=owner.auth)
        assert r.status_code == 204
        left = await next_frame(ws)
        assert (left["type"], left["user_id"]) == ("member.left", member.id)
        await assert_closed_with(ws, 4403)
    await remote.send(owner, cid, "after removal")
    async with remote.socket(cid, member.token) as ws:
        await assert_closed_with(ws, 4403)


async def test_server_survives_abrupt_disconnects(remote: Remote, server: ServerProcess) -> None:
    a, b = await remote.account(), await remote.account()
    cid = await remote.group(a, b)
    for _ in range(5):
        ws = await remote.socket(cid, a.token)
        await ws.send(json.dumps({"type": "message.send", "body": "bye"}))
        ws.transport.abort()  # no close handshake
    async with remote.socket(cid, b.token) as wb:
        await wb.send(json.dumps({"type": "ping"}))
        # A "bye" still being stored (slower on PostgreSQL) may arrive first: it is news to b.
        assert await next_frame(wb, skip=("presence", "message.created")) == {"type": "pong"}
    assert server.process is not None and server.process.poll() is None
