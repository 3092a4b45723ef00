"""The whole API through a real `convocore serve` process, on every storage it supports."""

import json
from pathlib import Path

from tests.support.remote import Remote, frames_until, next_frame
from tests.support.server import ServerProcess


async def _scenario(remote: Remote) -> tuple[str, str]:
    """Everything a chat user does, checked step by step. Returns (conversation id, a username)."""
    alice, bob = await remote.account("alice"), await remote.account("bob")
    r = await remote.http.post("/api/conversations/", json={"kind": "direct", "members": [bob.id]}, headers=alice.auth)
    assert r.status_code == 201
    direct = r.json()["id"]
    r = await remote.http.post("/api/conversations/", json={"kind": "direct", "members": [alice.id]}, headers=bob.auth)
    assert (r.status_code, r.json()["id"]) == (200, direct)

    cid = await remote.group(alice, bob, title="e2e")
    async with remote.socket(cid, bob.token) as wb, remote.socket(cid, alice.token) as wa:
        for ws in (wa, wb):
            await ws.send(json.dumps({"type": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}
        await remote.send(alice, cid, "over rest", client_id="r1")
        await wa.send(json.dumps({"type": "message.send", "body": "over socket", "client_id": "w1", "reply_to": 1}))
        ack = (await frames_until(wa, lambda f: f["type"] == "ack"))[-1]
        got = [await next_frame(wb), await next_frame(wb)]
    assert ack["seq"] == 2
    assert [(f["type"], f["message"]["seq"], f["message"]["body"]) for f in got] == [
        ("message.created", 1, "over rest"),
        ("message.created", 2, "over socket"),
    ]
    again = await remote.send(alice, cid, "over rest", client_id="r1")
    assert again["seq"] == 1

    inbox = (await remote.http.get("/api/conversations/", headers=bob.auth)).json()["items"]
    assert [c["id"] for c in inbox] == [cid, direct]
    assert (inbox[0]["unread_count"], inbox[0]["last_message"]["body"]) == (2, "over socket")
    r = await remote.http.post(f"/api/conversations/{cid}/read/", json={"seq": 2}, headers=bob.auth)
    assert r.json()["unread_count"] == 0

    r = await remote.http.patch(f"/api/messages/{cid}/1/", json={"body": "edited"}, headers=alice.auth)
    assert r.json()["body"] == "edited"
    r = await remote.http.delete(f"/api/messages/{cid}/2/", headers=alice.auth)
    assert r.json()["deleted"] is True
    page = (await remote.http.get(f"/api/messages/{cid}/?limit=1", headers=bob.auth)).json()
    assert ([m["seq"] for m in page["items"]], page["has_more"]) == ([2], True)

    r = await remote.http.get(f"/api/conversations/{cid}/", headers=(await remote.account()).auth)
    assert r.status_code == 404
    r = await remote.http.post("/api/messages/", json={"conversation_id": cid, "body": "x" * 4001}, headers=bob.auth)
    assert (r.status_code, r.json()["field"]) == (422, "body")

    assert (await remote.http.post("/api/logout/", headers=bob.auth)).status_code == 204
    assert (await remote.http.get("/api/users/me/", headers=bob.auth)).status_code == 401
    return cid, alice.username


async def _run(server: ServerProcess) -> tuple[str, str]:
    server.start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        return await _scenario(remote)
    finally:
        await remote.close()
        server.stop()


async def test_memory_mode(tmp_path: Path) -> None:
    await _run(ServerProcess("--memory", cwd=tmp_path))
    assert not list(tmp_path.glob("*.db"))  # --memory persists nothing


async def test_default_sqlite_file_survives_a_restart(tmp_path: Path) -> None:
    cid, username = await _run(ServerProcess(cwd=tmp_path))
    assert (tmp_path / "convocore.db").exists()  # the embedded default: a file in the working directory
    server = ServerProcess(cwd=tmp_path).start()
    remote = Remote(server.base_url, server.ws_url)
    try:
        r = await remote.http.post("/api/login/", json={"username": username, "password": "correct horse"})
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        page = (await remote.http.get(f"/api/messages/{cid}/", headers=auth)).json()
        assert [(m["seq"], m["body"], m["deleted"]) for m in page["items"]] == [(1, "edited", False), (2, "", True)]
    finally:
        await remote.close()
        server.stop()


async def test_postgresql(tmp_path: Path, postgres_database: str) -> None:
    await _run(ServerProcess("--database-url", postgres_database, cwd=tmp_path))


async def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    await _run(ServerProcess(env={"CONVOCORE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, cwd=tmp_path))
    assert db.exists()
