"""Several server processes sharing one PostgreSQL database and one Redis."""

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
import websockets

from tests.conftest import IN_CI
from tests.support.remote import Remote, assert_closed_with, next_frame, ready, seqs_until
from tests.support.server import ServerProcess, free_port


class Cluster:
    def __init__(self, *servers: ServerProcess) -> None:
        self.servers = servers
        self.remotes = [Remote(s.base_url, s.ws_url) for s in servers]

    async def close(self) -> None:
        for remote in self.remotes:
            await remote.close()
        for server in self.servers:
            server.stop()


def _processes(tmp: Path, database: str, redis_url: str, prefix: str, n: int = 2, **env: str) -> list[ServerProcess]:
    settings = {"CONVOCORE_REDIS_PREFIX": prefix, **env}
    return [
        ServerProcess("--database-url", database, "--redis-url", redis_url, env=settings, cwd=tmp).start()
        for _ in range(n)
    ]


@pytest.fixture
async def cluster(tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    group = Cluster(*_processes(tmp_path, postgres_database, redis_url, redis_prefix, CONVOCORE_PRESENCE_TTL_S="2"))
    yield group
    await group.close()


async def test_messages_sent_through_either_process_reach_sockets_on_both(cluster: Cluster) -> None:
    one, two = cluster.remotes
    a, b = await one.account(), await one.account()
    cid = await one.group(a, b)
    async with one.socket(cid, a.token) as on_one, two.socket(cid, b.token) as on_two:
        await ready(on_one)
        await ready(on_two)
        for i in range(10):
            await (one if i % 2 else two).send(a, cid, f"m{i}")
        await on_one.send(json.dumps({"type": "message.send", "body": "socket on one"}))
        await on_two.send(json.dumps({"type": "message.send", "body": "socket on two"}))
        assert await seqs_until(on_two, 12, timeout=20) == list(range(1, 13))
        assert await seqs_until(on_one, 12, timeout=20) == list(range(1, 13))


async def test_membership_and_logout_travel_between_processes(cluster: Cluster) -> None:
    one, two = cluster.remotes
    me, owner = await one.account(), await one.account()
    async with websockets.connect(f"{two.ws_url}/ws/?token={me.token}") as everything:
        await ready(everything)
        cid = await one.group(owner, me, title="made on one")  # me joins through process one
        await one.send(owner, cid, "hello")
        frame = await next_frame(everything, skip=("presence", "member.joined"))
        assert (frame["type"], frame["conversation_id"]) == ("message.created", cid)
        async with two.socket(cid, me.token) as chat:
            await ready(chat)
            r = await one.http.delete(f"/api/conversations/{cid}/members/{me.id}/", headers=owner.auth)
            assert r.status_code == 204
            await assert_closed_with(chat, 4403)
        assert (await one.http.post("/api/logout/", headers=me.auth)).status_code == 204
        await assert_closed_with(everything, 4401)


async def test_presence_across_processes_and_when_one_dies(cluster: Cluster) -> None:
    one, two = cluster.remotes
    a, b = await one.account(), await one.account()
    await one.group(a, b)
    async with websockets.connect(f"{two.ws_url}/ws/?token={b.token}") as watcher:
        await ready(watcher)
        on_one = await websockets.connect(f"{one.ws_url}/ws/?token={a.token}")
        assert await next_frame(watcher, skip=()) == {"type": "presence", "user_id": a.id, "status": "online"}
        process = cluster.servers[0].process
        assert process is not None
        process.send_signal(signal.SIGKILL)  # no goodbye: its entries must expire
        offline = await next_frame(watcher, skip=(), timeout=15)
        assert offline == {"type": "presence", "user_id": a.id, "status": "offline"}
        on_one.transport.abort()


@pytest.fixture
def private_redis() -> Iterator["PrivateRedis"]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true)")
        pytest.skip("redis-server is not installed; the Redis restart test starts one of its own")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


class PrivateRedis:
    """A Redis of this test's own, so stopping it disturbs no one else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


async def test_redis_restarted_mid_stream_loses_nothing(
    tmp_path: Path, postgres_database: str, private_redis: PrivateRedis, redis_prefix: str
) -> None:
    group = Cluster(*_processes(tmp_path, postgres_database, private_redis.url, redis_prefix))
    try:
        one, two = group.remotes
        a, b = await one.account(), await one.account()
        cid = await one.group(a, b)
        r = await one.http.post("/api/login/", json={"username": a.username, "password": "correct horse"})
        second_session = {"Authorization": f"Bearer {r.json()['access_token']}"}
        total = 60
        async with (
            two.socket(cid, b.token) as watcher,
            two.socket(cid, r.json()["access_token"]) as logged_out_in_the_dark,
        ):
            await ready(watcher)
            await ready(logged_out_in_the_dark)
            for i in range(total):
                if i == 20:
                    private_redis.stop()
                    assert (await one.http.post("/api/logout/", headers=second_session)).status_code == 204
                if i == 40:
                    private_redis.start()  # same port: the processes reconnect on their own
                await one.send(a, cid, f"m{i}")  # every write is acknowledged, Redis or not
                await asyncio.sleep(0.02)
            assert await seqs_until(watcher, total, timeout=30) == list(range(1, total + 1))
            await assert_closed_with(logged_out_in_the_dark, 4401, timeout=30)
        async with two.socket(cid, b.token + "&since=0") as resuming:
            assert await seqs_until(resuming, total, timeout=20) == list(range(1, total + 1))
    finally:
        await group.close()


async def test_a_process_listens_only_for_what_it_has_sockets_for(
    cluster: Cluster, redis_url: str, redis_prefix: str
) -> None:
    one, _ = cluster.remotes
    a, b = await one.account(), await one.account()
    cid = await one.group(a, b)
    client = redis.Redis.from_url(redis_url)

    def channels() -> set[str]:
        return {cast(bytes, c).decode() for c in client.pubsub_channels(f"{redis_prefix}:*")}

    assert channels() == {f"{redis_prefix}:presence"}
    async with one.socket(cid, b.token) as ws:
        await ready(ws)
        assert channels() == {f"{redis_prefix}:presence", f"{redis_prefix}:c:{cid}", f"{redis_prefix}:u:{b.id}"}
    for _ in range(50):
        if channels() == {f"{redis_prefix}:presence"}:
            break
        await asyncio.sleep(0.1)
    assert channels() == {f"{redis_prefix}:presence"}
