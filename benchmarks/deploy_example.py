"""The measured example of docs/deploy.md: several `convocore serve` processes on one
PostgreSQL database and one Redis, driven by `convocore.client`.

There is no load balancer here, so the script spreads the users over the processes itself:
user i talks to process i % N, over REST and over its socket. The members of a group are
consecutive users, so they sit on different processes and most deliveries cross Redis.

Each user sends --messages messages to their group over REST (paced so that all users
together send --rate messages/s; 0: each sends the next as soon as the last is answered).
Measured: deliveries to the other members per second, and the latency from the start of the
POST to the frame coming out of the receiver's `events()`.

    python -m benchmarks.deploy_example [--processes 3] [--users 60] [--group-size 4]
                                        [--messages 20] [--rate 0] [--port P --through URL]

It creates a fresh database through CONVOCORE_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test, used only to CREATE and DROP it), upgrades it with
`convocore migrate`, uses a fresh prefix on CONVOCORE_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/0), and removes both afterwards. Servers are stopped by their PIDs.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

from convocore.client import ConvocoreClient, frames

POSTGRES_URL = os.environ.get("CONVOCORE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONVOCORE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVER_ENV = {
    # Cheap password hashing: it only speeds up the sign-ups before the measurement.
    "CONVOCORE_ARGON2_TIME_COST": "1",
    "CONVOCORE_ARGON2_MEMORY_COST": "1024",
    # The abuse limits would throttle a load test that sends from one address.
    "CONVOCORE_AUTH_RATE_PER_MINUTE": "1000000",
    "CONVOCORE_HTTP_RATE_PER_MINUTE": "1000000",
    "CONVOCORE_SEND_LIMIT": "1000000",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _convocore() -> list[str]:
    script = Path(sys.executable).with_name("convocore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "convocore.entrypoints.cli"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"convocore_deploy_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(POSTGRES_URL)
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql")))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(scheme="postgresql+asyncpg", path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def servers(
    count: int, database_url: str, prefix: str, first_port: int = 0
) -> AsyncIterator[list[tuple[int, str]]]:
    """``count`` processes on the database and Redis: their (PID, base URL)."""
    env = {**os.environ, **SERVER_ENV, "CONVOCORE_REDIS_PREFIX": prefix}
    migrate = await asyncio.create_subprocess_exec(
        *_convocore(), "migrate", "--database-url", database_url, env=env, stdout=sys.stderr
    )
    if await migrate.wait() != 0:
        raise RuntimeError("convocore migrate failed")
    logs = Path(tempfile.mkdtemp(prefix="convocore-deploy-"))
    started: list[asyncio.subprocess.Process] = []
    ports = [first_port + i if first_port else _free_port() for i in range(count)]
    try:
        for port in ports:
            command = ["serve", "--port", str(port), "--log-level", "warning", "--database-url", database_url]
            with (logs / f"server-{port}.log").open("wb") as log:
                started.append(
                    await asyncio.create_subprocess_exec(
                        *_convocore(), *command, "--redis-url", REDIS_URL, stdout=log, stderr=log, env=env
                    )
                )
        async with httpx.AsyncClient() as http:
            for port in ports:
                for _ in range(300):  # up to 30 s each
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"a server did not come up; see {logs}")
        yield [(process.pid, f"http://127.0.0.1:{port}") for process, port in zip(started, ports, strict=True)]
    finally:
        for process in started:  # by PID, never by name
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in started:
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def remove_redis_prefix(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        async for key in redis.scan_iter(match=f"{prefix}:*", count=500):
            await redis.delete(key)
    finally:
        await redis.aclose()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def drive(args: argparse.Namespace, urls: list[str]) -> dict[str, float | int]:
    tag = uuid.uuid4().hex[:6]
    clients = [ConvocoreClient(urls[i % len(urls)], max_retries=5) for i in range(args.users)]
    gate = asyncio.Semaphore(16)

    async def sign_up(i: int, client: ConvocoreClient) -> None:
        async with gate:
            await client.register(f"u{i}_{tag}", "correct horse")
            await client.login(f"u{i}_{tag}", "correct horse")

    await asyncio.gather(*(sign_up(i, c) for i, c in enumerate(clients)))
    size = args.group_size
    groups = [clients[i : i + size] for i in range(0, len(clients) - size + 1, size)]
    conversation_of: dict[int, str] = {}
    for n, members in enumerate(groups):
        started = await members[0].start_group(f"group {n}", members=[m.user.id for m in members[1:]])
        for member in members:
            conversation_of[id(member)] = started.id
    talkers = [c for c in clients if id(c) in conversation_of]
    await asyncio.gather(*(c.connect() for c in talkers))

    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    expected = len(talkers) * args.messages * (size - 1)
    everything = asyncio.Event()

    async def listen(client: ConvocoreClient) -> None:
        async for event in client.events():
            if isinstance(event, frames.MessageCreatedFrame) and event.message.sender_id != client.user.id:
                started = sent_at.get(event.message.client_id or "")
                if started is not None:
                    latencies.append(time.perf_counter() - started)
                    if len(latencies) == expected:
                        everything.set()

    async def speak(k: int, client: ConvocoreClient) -> None:
        interval = len(talkers) / args.rate if args.rate else 0.0
        next_at = time.perf_counter() + random.uniform(0, interval)
        for n in range(args.messages):
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            client_id = f"{k}-{n}"
            sent_at[client_id] = time.perf_counter()
            await client.send(conversation_of[id(client)], f"message {n} from {k}", client_id=client_id)

    listeners = [asyncio.create_task(listen(c)) for c in talkers]
    cpu_before = [_cpu_seconds(pid) for pid in args.pids]
    driver_before = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(speak(k, c) for k, c in enumerate(talkers)))
    sent_in = time.perf_counter() - start
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everything.wait(), timeout=60)
    elapsed = time.perf_counter() - start
    cpu = [_cpu_seconds(pid) - before for pid, before in zip(args.pids, cpu_before, strict=True)]
    driver_cpu = time.process_time() - driver_before
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(c.aclose() for c in clients))
    return {
        "processes": len(urls),
        "users": len(talkers),
        "groups": len(groups),
        "messages_sent": len(sent_at),
        "sent_per_s": round(len(sent_at) / sent_in, 1),
        "deliveries_expected": expected,
        "deliveries": len(latencies),
        "deliveries_per_s": round(len(latencies) / elapsed, 1),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "latency_max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "server_cpu_s": round(sum(cpu), 1),
        "driver_cpu_s": round(driver_cpu, 1),
        "wall_s": round(elapsed, 2),
    }


async def main(args: argparse.Namespace) -> None:
    prefix = f"convocore-deploy-{uuid.uuid4().hex[:8]}"
    try:
        async with contextlib.AsyncExitStack() as stack:
            database_url = await stack.enter_async_context(fresh_database())
            processes = await stack.enter_async_context(servers(args.processes, database_url, prefix, args.port))
            args.pids = [pid for pid, _ in processes]
            urls = [args.through] if args.through else [url for _, url in processes]
            result = await drive(args, urls)
            result["processes"] = len(processes)
    finally:
        await remove_redis_prefix(prefix)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--messages", type=int, default=20, help="messages each user sends")
    parser.add_argument("--rate", type=float, default=0, help="messages/s from all users together; 0: closed loop")
    parser.add_argument("--port", type=int, default=0, help="the first process's port (then +1, ...); 0: any free")
    parser.add_argument(
        "--through", help="a load balancer's URL for every client, instead of spreading them over the processes"
    )
    asyncio.run(main(parser.parse_args()))
